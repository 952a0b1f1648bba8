"""Training states and checkpoint files: atomic saves, reading a state safely, finding the newest
one; the RNG states a resume restores; seeding; DDP unwrapping.

``training_states/{t}.state`` is self-contained: iteration, epoch, the sampler's position, the
network and EMA weights, optimiser, scheduler and grad-scaler states, the RNG states of Python,
NumPy, torch and CUDA (of every rank), the non-finite counters and the best-metric record. It
holds only tensors and plain containers, so it is read with ``torch.load(weights_only=True)``
(no code runs) and maps to the CPU first: a state written on a GPU resumes on a CPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .._atomic import atomic_open
from ..errors import CheckpointError

__all__ = ["STATE_FORMAT", "STATE_VERSION", "atomic_torch_save", "load_training_state", "find_latest_state",
           "sweep_temp_files", "rng_state", "set_rng_state", "seed_everything", "unwrap", "to_cpu"]

STATE_FORMAT = "colorfid.train_state"
STATE_VERSION = 1


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    A crash (even SIGKILL) at any moment leaves either the previous file or the complete new one
    under ``path``; the temporary file (``.<name>.*.tmp``) is removed on errors and swept at the
    next start of a run in the same experiment.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(p, "wb") as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise CheckpointError(f"cannot write {p}: {exc}") from exc
    return p


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``training_states/{iter}.state`` file on the CPU, safely (``weights_only=True``).

    Raises :class:`~colorfid.errors.CheckpointError` naming the file when it is missing, corrupt
    or not a colorfid training state.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"training state not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or unsafe pickle
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{p}: not a readable training state ({first})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{p}: not a colorfid training state (format {STATE_FORMAT!r} expected; found {keys}). "
                              "BasicSR .state files hold no weights and no RNG state: fine-tune from the "
                              "matching net_g_*.pth instead (--finetune)")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{p}: training state version {state.get('version')!r}; this colorfid reads {STATE_VERSION}")
    return state


_STATE_RE = re.compile(r"^(\d+)\.state$")


def find_latest_state(states_dir: str | os.PathLike) -> Path | None:
    """The ``{iter}.state`` with the largest iteration in ``states_dir`` (None if there is none)."""
    d = Path(states_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STATE_RE.match(p.name))]
    return max(found)[1] if found else None


def sweep_temp_files(*folders: Path) -> None:
    for d in folders:
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    npst = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [str(npst[0]), torch.from_numpy(np.asarray(npst[1]).astype(np.int64)), int(npst[2]),
                  int(npst[3]), float(npst[4])],
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return out


def set_rng_state(st: Mapping[str, Any]) -> None:
    py = st["python"]
    random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
    nps = st["numpy"]
    np.random.set_state((nps[0], nps[1].numpy().astype(np.uint32), int(nps[2]), int(nps[3]), float(nps[4])))
    torch.set_rng_state(st["torch"])
    cuda = st.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i], i)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
    return obj
