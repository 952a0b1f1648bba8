"""colorfid's NAFNet trainer: BasicSR-style YAML options, colour losses, exact resume, DDP.

``python -m colorfid.train -opt options.yml`` or ``colorfid train -opt options.yml``;
from Python::

    from colorfid.train import train
    summary = train("options/train_nafnet_color.yml", finetune="net_g_12000.pth")

Rooms: :mod:`~colorfid.train.options` (YAML parsing and validation),
:mod:`~colorfid.train.data` (paired data, augmentation, resumable sampler),
:mod:`~colorfid.train.trainer` (the loop, schedulers, EMA, checkpoints, validation).
Heavy imports (torch, the model zoo) happen when the names below are first used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "train",
    "Trainer",
    "TrainSummary",
    "load_options",
    "parse_options",
    "PairedImageDataset",
    "TrainSampler",
    "build_train_loader",
    "ModelEMA",
    "CosineAnnealingRestartLR",
    "TrueCosineAnnealingLR",
    "MultiStepRestartLR",
    "L1Loss",
    "MSELoss",
    "CharbonnierLoss",
    "PSNRLoss",
    "load_training_state",
    "find_latest_state",
    "atomic_torch_save",
    "main",
]

_WHERE = {
    "load_options": "options",
    "parse_options": "options",
    "PairedImageDataset": "data",
    "TrainSampler": "data",
    "build_train_loader": "data",
    "main": "__main__",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        mod = importlib.import_module(f"{__name__}.{_WHERE.get(name, 'trainer')}")
        value = getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
