"""colorfid — colour-fidelity metrics, losses, regression gate, reports and training for
image-restoration models, in PyTorch.

The public API is re-exported here. Names are resolved lazily (PEP 562): ``import colorfid``
costs nothing until a name is used, which keeps the pytest plugin (loaded by every pytest run
of a user who has colorfid installed) inert and instant.

Rooms (lower never import higher; docs/ARCHITECTURE.md): the internal helpers (``_select``,
``_tensors``, ``_layout``, ``_format``, ``_files``, ``_threads``, ``_aot``) < ``color`` < ``difference`` <
``metrics`` < ``losses`` < ``testing`` < ``io`` < ``models`` < ``stress`` < ``results`` <
``evaluation`` < ``gate`` < ``report`` < ``pytest_plugin`` < ``train`` < ``basicsr`` < ``demo`` < ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BaselineError,
    CheckpointError,
    ColorfidError,
    ColorfidWarning,
    ConfigError,
    DTypeError,
    ImageReadError,
    ImageWriteError,
    KernelError,
    MissingDependencyError,
    RangeError,
    ShapeError,
    StressSetError,
    TrainingError,
    UnknownNameError,
    UnsafeCheckpointError,
    UsageError,
)

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # colour conversions
    **{
        n: "colorfid.color"
        for n in (
            "to_float", "check_srgb", "srgb_to_linear", "linear_to_srgb", "linear_rgb_to_xyz",
            "xyz_to_linear_rgb", "xyz_to_lab", "lab_to_xyz", "lab_to_lch", "lch_to_lab",
            "srgb_to_lab", "srgb_uint8_to_lab", "lab_to_srgb", "srgb_to_ycbcr", "srgb_to_hsv", "chroma",
            "hsv_saturation",
        )
    },
    # colour differences
    **{n: "colorfid.difference" for n in ("delta_e_76", "delta_e_94", "delta_e_2000")},
    # image statistics
    **{
        n: "colorfid.metrics"
        for n in (
            "MetricProtocol", "MetricSpec", "METRICS", "get_metric", "summarize", "delta_e_map",
            "high_chroma_mask", "saturation_ratio", "hue_shift", "hue_angle_delta", "brightness_ratio", "psnr", "ssim",
            "health_flags", "image_metrics",
        )
    },
    # training losses and the helpers for users' own losses
    **{
        n: "colorfid.losses"
        for n in (
            "ColorAwareLoss", "LabLoss", "SaturationLoss", "HueDiversityLoss", "ConfidenceLoss",
            "ColorDiversityLoss", "LossWeightSchedule", "register_basicsr",
        )
    },
    **{n: "colorfid.testing" for n in ("assert_differentiable", "loss_balance")},
    # files, models, inference
    **{n: "colorfid.io" for n in ("read_image", "write_image", "ImageMeta")},
    **{n: "colorfid.models.nafnet" for n in ("NAFNet", "NAFNetLocal")},
    **{n: "colorfid.models.checkpoint" for n in ("load_model", "save_model", "file_sha256")},
    **{n: "colorfid.models.inference" for n in ("run_model", "select_device")},
    # stress sets, evaluation, gate, report
    **{n: "colorfid.stress" for n in ("StressSet", "load_stress_set", "resolve_sets", "bundled_set_names")},
    **{n: "colorfid.evaluation" for n in ("evaluate", "Results", "IdentityModel")},
    **{
        n: "colorfid.gate"
        for n in ("judge", "load_thresholds", "load_baseline", "write_baseline", "GateReport", "Thresholds")
    },
    **{n: "colorfid.report" for n in ("write_report", "append_history", "load_history")},
    # BasicSR / NAFNet-fork integration (python -m colorfid.basicsr -opt x.yml)
    **{n: "colorfid.basicsr" for n in ("register_basicsr_all",)},
}

__all__ = [
    "__version__",
    "BaselineError",
    "CheckpointError",
    "ColorfidError",
    "ColorfidWarning",
    "ConfigError",
    "DTypeError",
    "ImageReadError",
    "ImageWriteError",
    "KernelError",
    "MissingDependencyError",
    "RangeError",
    "ShapeError",
    "StressSetError",
    "TrainingError",
    "UnknownNameError",
    "UnsafeCheckpointError",
    "UsageError",
    *_EXPORTS,
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'colorfid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .color import (
        check_srgb, chroma, hsv_saturation, lab_to_lch, lab_to_srgb, lab_to_xyz, lch_to_lab,
        linear_rgb_to_xyz, linear_to_srgb, srgb_to_hsv, srgb_to_lab, srgb_to_linear, srgb_to_ycbcr,
        srgb_uint8_to_lab, to_float, xyz_to_lab, xyz_to_linear_rgb,
    )
    from .basicsr import register_basicsr_all
    from .difference import delta_e_76, delta_e_94, delta_e_2000
    from .evaluation import IdentityModel, Results, evaluate
    from .gate import GateReport, Thresholds, judge, load_baseline, load_thresholds, write_baseline
    from .io import ImageMeta, read_image, write_image
    from .losses import (
        ColorAwareLoss, ColorDiversityLoss, ConfidenceLoss, HueDiversityLoss, LabLoss,
        LossWeightSchedule, SaturationLoss, register_basicsr,
    )
    from .metrics import (
        METRICS, MetricProtocol, MetricSpec, brightness_ratio, delta_e_map, get_metric,
        health_flags, high_chroma_mask, hue_angle_delta, hue_shift, image_metrics, psnr, saturation_ratio, ssim,
        summarize,
    )
    from .models.checkpoint import file_sha256, load_model, save_model
    from .models.inference import run_model, select_device
    from .models.nafnet import NAFNet, NAFNetLocal
    from .report import append_history, load_history, write_report
    from .stress import StressSet, bundled_set_names, load_stress_set, resolve_sets
    from .testing import assert_differentiable, loss_balance
