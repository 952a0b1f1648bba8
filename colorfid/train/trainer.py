"""The training loop: NAFNet + colorfid losses, exact resume, atomic checkpoints, DDP, validation
through the gate's own code path.

One iteration ``t`` (1-based, as BasicSR counts) does: set the learning rate (linear warm-up
``lr0 * t / warmup_iter`` while ``t < warmup_iter``, else the scheduler's value at ``t``), set the
loss-term weights of the schedule at ``t``, forward (bf16 autocast and channels_last on CUDA),
losses in float32, backward, gradient norm (clipped when ``grad_clip_norm`` is set), the
non-finite guard, optimiser step, EMA update. Every ``print_freq`` iterations a log line with
every loss component, the learning rate and it/s; every ``save_checkpoint_freq`` iterations
``models/net_g_{t}.pth`` and ``training_states/{t}.state``; every ``val_freq`` iterations a
validation with :func:`colorfid.evaluate.evaluate` and :func:`colorfid.gate.judge`.

Checkpoints
-----------
``models/net_g_{t}.pth`` is BasicSR's layout, ``{"params": state_dict}`` (plus
``"params_ema"`` with EMA), keys without ``module.``: the official NAFNet code loads it with
``strict=True``. ``training_states/{t}.state`` is self-contained: iteration, epoch, the sampler's
position, the network and EMA weights, optimiser, scheduler and grad-scaler states, the RNG states
of Python, NumPy, torch and CUDA (of every rank), the non-finite counters and the best-metric
record. It holds only tensors and plain containers, so it is read with
``torch.load(weights_only=True)`` (no code runs) and maps to the CPU first: a state written on a
GPU resumes on a CPU. Every file is written to a temporary name in the same folder, fsynced and
renamed over the final name (``os.replace``), so a crash at any moment leaves either the old file
or the complete new one, never a partial file under a final name.

Fine-tune vs resume
-------------------
*Fine-tune* (``path.pretrain_network_g`` / ``--finetune CKPT``) loads weights only: fresh
optimiser, schedule and EMA, iteration 0. *Resume* (``path.resume_state`` / ``--resume STATE``)
continues exactly where the state left off. *Auto-resume* (``--auto-resume`` /
``path.auto_resume: true``) resumes from the newest state under ``experiments/<name>`` when there
is one, and never happens unless asked.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import inspect
import json
import logging
import math
import os
import random
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from .._atomic import atomic_open
from ..errors import (
    CheckpointError,
    ColorfidWarning,
    ConfigError,
    TrainingError,
    UnknownNameError,
    UsageError,
)
from ..losses.pixel import PIXEL_LOSSES, CharbonnierLoss, L1Loss, MSELoss, PSNRLoss
from .options import load_options, options_to_yaml_dict

__all__ = [
    "Trainer",
    "TrainSummary",
    "train",
    "ModelEMA",
    "CosineAnnealingRestartLR",
    "TrueCosineAnnealingLR",
    "MultiStepRestartLR",
    "L1Loss",
    "MSELoss",
    "CharbonnierLoss",
    "PSNRLoss",
    "atomic_torch_save",
    "load_training_state",
    "find_latest_state",
    "STATE_FORMAT",
]

STATE_FORMAT = "colorfid.train_state"
STATE_VERSION = 1
logger = logging.getLogger("colorfid.train")


# =============================================================================================
# Learning-rate schedulers (closed form: the rate is a function of the iteration only)
# =============================================================================================


class _ClosedFormLR(LRScheduler):
    """Base of the schedulers below: ``lr_at(t)`` is the rate at iteration ``t``."""

    def _lr(self, base_lr: float, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def lr_at(self, t: int) -> list[float]:
        """The learning rate of every parameter group at iteration ``t`` (``last_epoch`` = t)."""
        return [self._lr(float(base), int(t)) for base in self.base_lrs]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return self.lr_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)


class CosineAnnealingRestartLR(_ClosedFormLR):
    """BasicSR's cosine annealing with restarts.

    ``periods`` are the lengths of the cycles and ``restart_weights`` scale each cycle's peak.
    With cumulative ends ``c_i = periods[0] + ... + periods[i]``, iteration ``t`` is in the first
    cycle ``i`` with ``t <= c_i``; with ``r = c_{i-1}`` (0 for the first cycle)::

        lr(t) = eta_min + w_i * 0.5 * (lr0 - eta_min) * (1 + cos(pi * (t - r) / periods[i]))

    (BasicSR ``basicsr/models/lr_scheduler.py``; beyond the last cycle the last one's end value
    is kept, where BasicSR would fail.)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, periods: Sequence[int],
                 restart_weights: Sequence[float] = (1.0,), eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if len(periods) != len(restart_weights):
            raise ConfigError(f"CosineAnnealingRestartLR: periods ({len(periods)}) and restart_weights "
                              f"({len(restart_weights)}) must have the same length")
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in restart_weights]
        self.eta_min = float(eta_min)
        self.cumulative_period = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float, t: int) -> float:
        idx = len(self.periods) - 1
        for i, end in enumerate(self.cumulative_period):
            if t <= end:
                idx = i
                break
        t = min(t, self.cumulative_period[-1])
        restart = 0 if idx == 0 else self.cumulative_period[idx - 1]
        w = self.restart_weights[idx]
        return self.eta_min + w * 0.5 * (base_lr - self.eta_min) * (
            1.0 + math.cos(math.pi * (t - restart) / self.periods[idx]))


class TrueCosineAnnealingLR(_ClosedFormLR):
    """NAFNet's ``TrueCosineAnnealingLR``: cosine from ``lr0`` at 0 to ``eta_min`` at ``T_max``.

    ``lr(t) = eta_min + (lr0 - eta_min) * (1 + cos(pi * t / T_max)) / 2`` — the closed form of
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (SGDR, Loshchilov & Hutter 2017, without
    restarts), which NAFNet's option name maps to.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if int(T_max) < 1:
            raise ConfigError(f"TrueCosineAnnealingLR: T_max must be >= 1, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float, t: int) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0


class MultiStepRestartLR(_ClosedFormLR):
    """BasicSR's ``MultiStepRestartLR`` (also the YAML name ``MultiStepLR``).

    The rate is multiplied by ``gamma`` at each milestone; at a restart ``restarts[j]`` it is
    reset to ``lr0 * restart_weights[j]``, and only milestones after the last restart count::

        lr(t) = lr0 * w * gamma ** #{m in milestones : r < m <= t}

    with ``r`` the last restart ``<= t`` and ``w`` its weight (``r = 0``, ``w = 1`` before any).
    Without restarts this is ``torch.optim.lr_scheduler.MultiStepLR``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 restarts: Sequence[int] = (), restart_weights: Sequence[float] = (), last_epoch: int = -1) -> None:
        if len(restarts) != len(restart_weights):
            raise ConfigError("MultiStepRestartLR: restarts and restart_weights must have the same length")
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.restarts = [int(r) for r in restarts]
        self.restart_weights = [float(w) for w in restart_weights]
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float, t: int) -> float:
        r, w = 0, 1.0
        for rs, rw in zip(self.restarts, self.restart_weights):
            if rs <= t:
                r, w = rs, rw
        n = sum(1 for m in self.milestones if r < m <= t)
        return base_lr * w * self.gamma ** n


def build_scheduler(optimizer: torch.optim.Optimizer, spec: Mapping[str, Any] | None) -> _ClosedFormLR | None:
    """The scheduler of a normalised ``train.scheduler`` section (None: constant rate)."""
    if not spec:
        return None
    kind = spec["type"]
    if kind == "CosineAnnealingRestartLR":
        return CosineAnnealingRestartLR(optimizer, spec["periods"], spec["restart_weights"], spec["eta_min"])
    if kind == "TrueCosineAnnealingLR":
        return TrueCosineAnnealingLR(optimizer, spec["T_max"], spec["eta_min"])
    if kind in ("MultiStepRestartLR", "MultiStepLR"):
        return MultiStepRestartLR(optimizer, spec["milestones"], spec["gamma"], spec.get("restarts", ()),
                                  spec.get("restart_weights", ()))
    raise UnknownNameError(f"train.scheduler.type: unknown {kind!r}; known: CosineAnnealingRestartLR, "
                           "TrueCosineAnnealingLR, MultiStepLR, MultiStepRestartLR")


def known_losses() -> dict[str, type[nn.Module]]:
    """Every loss ``*_opt.type`` may name: colorfid.losses' and BasicSR's pixel losses."""
    from ..losses import BASICSR_LOSSES as colour_losses

    out = dict(colour_losses)
    out.update(PIXEL_LOSSES)
    return out


def build_loss(spec: Mapping[str, Any], key: str) -> nn.Module:
    """Build the loss of a normalised ``train.<key>`` section; ConfigError naming the key."""
    from ..metrics import MetricProtocol

    losses = known_losses()
    kind = spec["type"]
    if kind not in losses:
        raise UnknownNameError(f"train.{key}.type: unknown loss {kind!r}; known: {', '.join(sorted(losses))}")
    cls = losses[kind]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if isinstance(kwargs.get("protocol"), Mapping):
        kwargs["protocol"] = MetricProtocol.from_dict(kwargs["protocol"])
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        bad = [k for k in kwargs if k not in params]
        if bad:
            known = [k for k in params if k not in ("self",)]
            raise ConfigError(f"train.{key}: {kind} has no argument(s) {', '.join(bad)}; its arguments: {', '.join(known)}")
    try:
        return cls(**kwargs)
    except UsageError as exc:
        raise ConfigError(f"train.{key}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.{key}: cannot build {kind}({kwargs}): {exc}") from exc


def _loss_label(key: str) -> str:
    return {"pixel_opt": "l_pix", "perceptual_opt": "l_percep"}.get(key, "l_" + key[: -len("_opt")])


# =============================================================================================
# EMA
# =============================================================================================


class ModelEMA:
    """Exponential moving average of a model's parameters (BasicSR ``model_ema``).

    After every optimiser step ``ema = decay * ema + (1 - decay) * param`` (buffers are copied);
    it starts as a copy of the model. The averaged network is :attr:`module` (eval mode, no grad).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema_decay: expected a number in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs: list[tuple[Tensor, Tensor]] | None = None
        self._model_ref = model

    def _bind(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        ema_p = dict(self.module.named_parameters())
        src = dict(model.named_parameters())
        keys = list(ema_p)
        return [ema_p[k] for k in keys], [src[k] for k in keys]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        dst, src = self._bind(model)
        torch._foreach_mul_(dst, self.decay)
        torch._foreach_add_(dst, [s.detach() for s in src], alpha=1.0 - self.decay)
        ema_b = dict(self.module.named_buffers())
        for k, b in model.named_buffers():
            if k in ema_b:
                ema_b[k].copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, sd: Mapping[str, Tensor]) -> None:
        self.module.load_state_dict(sd, strict=True)


# =============================================================================================
# Files: atomic writes, training states
# =============================================================================================


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


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        fh.write(text)


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


def _sweep_temp_files(*folders: Path) -> None:
    for d in folders:
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()


# =============================================================================================
# RNG and distributed helpers
# =============================================================================================


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(st: Mapping[str, Any]) -> None:
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclasses.dataclass
class TrainSummary:
    """What :meth:`Trainer.train` returns."""

    iteration: int
    epoch: int
    experiments_root: Path
    last_checkpoint: Path | None
    last_state: Path | None
    skipped_steps: int
    best: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float


class _TqdmHandler(logging.Handler):
    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover
            self.handleError(record)


# =============================================================================================
# Trainer
# =============================================================================================


class Trainer:
    """Build everything from the options (all errors surface here, before any step) and train.

    Args:
        opt: normalised options (:func:`colorfid.train.options.parse_options`), or a YAML path.
        resume: a training state to continue exactly (overrides ``path.resume_state``).
        auto_resume: resume from the newest state of this experiment if there is one
            (overrides ``path.auto_resume``; never on unless asked).
        finetune: weights to start from with a fresh optimiser/schedule at iteration 0
            (overrides ``path.pretrain_network_g``). Exclusive with ``resume``.
        device: ``"cpu"``, ``"cuda"``...; default: this process's GPU if there is one, else CPU.
        progress: tqdm bar (None: on a terminal only, rank 0).
        model: an ``nn.Module`` to train instead of building ``network_g`` (tests, custom nets).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (NCCL on GPUs,
    gloo on CPU, or ``dist_params.backend``) unless it already is.
    """

    def __init__(self, opt: Mapping[str, Any] | str | os.PathLike, *, resume: str | os.PathLike | None = None,
                 auto_resume: bool | None = None, finetune: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, progress: bool | None = None,
                 model: nn.Module | None = None) -> None:
        if not isinstance(opt, Mapping):
            opt = load_options(opt)
        elif "unknown_keys" not in opt:  # a raw mapping (as from YAML), not yet validated
            from .options import parse_options

            opt = parse_options(opt)
        self.opt: dict[str, Any] = copy.deepcopy(dict(opt))
        o = self.opt
        paths = o["path"]
        if finetune is not None and resume is not None:
            raise UsageError("--finetune and --resume are exclusive: fine-tune starts a new run from weights, "
                             "resume continues a run exactly")
        if finetune is not None:
            paths["pretrain_network_g"] = Path(finetune).expanduser().resolve()
            paths["resume_state"] = None
        if resume is not None:
            paths["resume_state"] = Path(resume).expanduser().resolve()
        if auto_resume is not None:
            paths["auto_resume"] = bool(auto_resume)
        self.progress = progress
        self._owns_pg = False
        self._init_distributed(device)
        self.device = self._pick_device(device)
        tr = o["train"]
        self.total_iter: int = tr["total_iter"]
        self.root: Path = paths["experiments_root"]
        self.models_dir: Path = paths["models"]
        self.states_dir: Path = paths["training_states"]

        # -- resume source (decided before anything is written)
        self.resume_path: Path | None = paths["resume_state"]
        if self.resume_path is None and paths["auto_resume"]:
            self.resume_path = find_latest_state(self.states_dir)
        state = load_training_state(self.resume_path) if self.resume_path is not None else None

        # -- seed (rank 0 decides when unset; a resumed run keeps its seed)
        seed = o["manual_seed"]
        if state is not None:
            seed = int(state["seed"])
        if seed is None:
            seed = random.SystemRandom().randrange(0, 2**31)
            if self.world_size > 1:
                box = [seed]
                dist.broadcast_object_list(box, src=0)
                seed = int(box[0])
        self.seed: int = int(seed)
        _seed_everything(self.seed + self.rank)

        # -- precision
        on_cuda = self.device.type == "cuda"
        amp = tr["amp"]
        if amp == "auto":
            amp = "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "off"
        if amp == "fp16" and not on_cuda:
            raise ConfigError(f"{o['source']}: train.amp: fp16 needs a CUDA device (this run is on {self.device})")
        self.amp_dtype: torch.dtype | None = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
        cl = tr["channels_last"]
        self.channels_last: bool = on_cuda if cl == "auto" else bool(cl)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=(amp == "fp16"))

        # -- data
        self._build_data()

        # -- network
        net = model if model is not None else self._build_network()
        self._finetune_from: Path | None = None
        if state is None and paths["pretrain_network_g"] is not None:
            self._load_pretrained(net, paths["pretrain_network_g"], paths["param_key_g"], paths["strict_load_g"])
            self._finetune_from = paths["pretrain_network_g"]
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.world_size > 1:  # DDP broadcasts rank 0's initial weights to every rank
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if on_cuda else None, broadcast_buffers=False)
        self.net = net
        # the EMA copy is taken after that broadcast, so every rank averages the same weights
        self.ema: ModelEMA | None = ModelEMA(_unwrap(net), tr["ema_decay"]) if tr["ema_decay"] > 0 else None

        # -- optimisation
        self.params = [p for p in _unwrap(net).parameters() if p.requires_grad]
        self.optimizer = self._build_optimizer()
        self.scheduler = build_scheduler(self.optimizer, tr["scheduler"])
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.warmup_iter: int = tr["warmup_iter"]
        self.clip_norm: float | None = tr["grad_clip_norm"]
        self.clip_norm_type: float = tr["grad_clip_norm_type"]
        self.max_nonfinite: int = tr["max_nonfinite_steps"]
        self._build_losses()

        # -- validation (sets and thresholds resolved now: errors before training)
        self._build_validation()

        # -- counters
        self.iteration = 0
        self.epoch = 0
        self.samples_in_epoch = 0
        self.skipped_total = 0
        self.skipped_consecutive = 0
        self.best: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None
        self.last_state: Path | None = None
        self._loader_iter: Iterator | None = None
        self._loss_names: list[str] | None = None
        self._last_weights: dict[str, float] | None = None
        self._tb: Any = None
        self._handlers: list[logging.Handler] = []
        self._bar: Any = None
        if state is not None:
            self._restore(state)

    # ------------------------------------------------------------------ setup helpers
    def _init_distributed(self, device: str | torch.device | None) -> None:
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        elif env_world > 1:
            gpu = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
            backend = self.opt["dist_params"]["backend"] or ("nccl" if gpu else "gloo")
            if backend == "nccl" and not gpu:
                backend = "gloo"  # BasicSR YAMLs say nccl; NCCL needs GPUs, so CPU runs use gloo
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
            self._owns_pg = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        self.is_main = self.rank == 0

    def _pick_device(self, device: str | torch.device | None) -> torch.device:
        if device is not None:
            dev = torch.device(device)
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise UsageError(f"device {device!r} requested but CUDA is not available here")
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", self.local_rank)
            return dev
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")

    def _build_data(self) -> None:
        from .data import PairedImageDataset, build_train_loader

        d = self.opt["datasets"]["train"]
        try:
            self.dataset = PairedImageDataset.from_options(d, train=True)
        except ConfigError as exc:
            raise ConfigError(f"{self.opt['source']}: datasets.train: {exc}") from exc
        self.batch_size: int = d["batch_size_per_gpu"]
        self.loader, self.sampler = build_train_loader(
            self.dataset, batch_size=self.batch_size, num_workers=d["num_worker_per_gpu"], seed=self.seed,
            rank=self.rank, world_size=self.world_size, shuffle=d["use_shuffle"],
            enlarge_ratio=d["dataset_enlarge_ratio"],
            pin_memory=d["pin_memory"] and self.device.type == "cuda", persistent_workers=d["persistent_workers"])

    def _build_network(self) -> nn.Module:
        from ..models import nafnet

        spec = dict(self.opt["network_g"])
        kind = spec.pop("type")
        cls = {"NAFNet": nafnet.NAFNet, "NAFNetLocal": nafnet.NAFNetLocal}[kind]
        params = inspect.signature(cls).parameters
        bad = [k for k in spec if k not in params]
        if bad:
            raise ConfigError(f"{self.opt['source']}: network_g: {kind} has no argument(s) {', '.join(bad)}; "
                              f"its arguments: {', '.join(params)}")
        try:
            return cls(**spec)
        except (UsageError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.opt['source']}: network_g: {exc}") from exc

    def _load_pretrained(self, net: nn.Module, path: Path, param_key: str, strict: bool) -> None:
        from ..models.checkpoint import check_state_dict, read_state_dict

        sd, used = read_state_dict(path, param_key=param_key, return_key=True)
        if used is not None and used != param_key:
            self._pending_log = f"{path}: no {param_key!r} entry; loaded {used!r}"
        if strict:
            check_state_dict(net, sd, source=str(path))
            net.load_state_dict(sd, strict=True)
            return
        own = net.state_dict()
        fit = {k: v for k, v in sd.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        skipped = sorted(set(sd) - set(fit))
        missing = sorted(set(own) - set(fit))
        net.load_state_dict(fit, strict=False)
        if skipped or missing:
            warnings.warn(f"{path}: strict_load_g is false: {len(fit)} tensors loaded, {len(skipped)} skipped "
                          f"(unexpected or other shape: {', '.join(skipped[:8])}), {len(missing)} left at their "
                          f"initial values ({', '.join(missing[:8])})", ColorfidWarning, stacklevel=3)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        s = self.opt["train"]["optim_g"]
        cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[s["type"]]
        return cls(self.params, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"],
                   amsgrad=s["amsgrad"])

    def _build_losses(self) -> None:
        from ..losses import LossWeightSchedule

        self.losses: dict[str, nn.Module] = {}
        self._wants_components: dict[str, bool] = {}
        for key, spec in self.opt["train"]["losses"].items():
            module = build_loss(spec, key).to(self.device)
            self.losses[key] = module
            self._wants_components[key] = hasattr(module, "set_weights") and hasattr(module, "components")
        self.outer_weights: dict[str, float] = {k: 1.0 for k in self.losses}
        self.loss_schedule = None
        sched = self.opt["train"]["loss_schedule"]
        if sched:
            terms: list[str] = list(self.losses)
            for m in self.losses.values():
                terms += [t for t in getattr(m, "TERMS", ()) if t not in terms]
            d = dict(sched)
            d.setdefault("known_keys", terms)
            try:
                self.loss_schedule = LossWeightSchedule.from_dict(d)
            except UsageError as exc:
                raise type(exc)(f"{self.opt['source']}: train.loss_schedule: {exc}") from exc
            # every term name must reach at least one loss
            for name in self.loss_schedule.keys:
                if name not in self.losses and not any(name in getattr(m, "TERMS", ()) for m in self.losses.values()):
                    raise UnknownNameError(f"{self.opt['source']}: train.loss_schedule: {name!r} is neither a loss "
                                           f"key ({', '.join(self.losses)}) nor a term of a configured loss")

    def _build_validation(self) -> None:
        v = self.opt["val"]
        self.val_sets: list[Any] = []
        self.thresholds: Any = None
        self._val_inputs_to_make: list[tuple[Path, Path]] = []
        if v is None:
            return
        if v["sets"]:
            from ..stress import resolve_sets

            self.val_sets.extend(resolve_sets(v["sets"]))
        for key, d in self.opt["datasets"]["val"].items():
            self.val_sets.append(self._val_set_from_dataset(key, d))
        names = [s.name for s in self.val_sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{self.opt['source']}: validation sets share the name(s) {dup}")
        from ..metrics import get_metric

        for i, m in enumerate(v["best_metrics"]):
            try:
                get_metric(m)
            except UnknownNameError as exc:
                raise UnknownNameError(f"{self.opt['source']}: val.best_metrics[{i}]: {exc}") from None
        if v["gate"] is not False:
            self.thresholds = _load_thresholds(v["gate"], self.opt["source"])
        self.val_use_ema = (self.ema is not None) if v["use_ema"] == "auto" else bool(v["use_ema"])
        if self.val_use_ema and self.ema is None:
            raise ConfigError(f"{self.opt['source']}: val.use_ema is true but train.ema_decay is 0 (no EMA)")

    def _val_set_from_dataset(self, key: str, d: Mapping[str, Any]) -> Any:
        """A ``datasets.val*`` folder pair as a colorfid StressSet (LQ made on disk for grayscale)."""
        from ..stress import Pair, StressSet
        from .data import paired_paths

        src = self.opt["source"]
        try:
            pairs = paired_paths(d["dataroot_gt"], d["dataroot_lq"], filename_tmpl=d["filename_tmpl"])
        except ConfigError as exc:
            raise ConfigError(f"{src}: datasets.{key}: {exc}") from exc
        if d["degradation"] == "grayscale":
            # LQ files are made at the start of train() (nothing is written before training starts)
            out = self.root / "val_inputs" / d["name"] / "lq"
            pairs = [(gt, out / (gt.stem + ".png")) for gt, _ in pairs]
            self._val_inputs_to_make.extend(pairs)
        return StressSet(name=d["name"], root=Path(d["dataroot_gt"]).parent, kind="lq",
                         pairs=[Pair(name=gt.stem, gt=gt, lq=lq, pred=None) for gt, lq in pairs],
                         description=f"datasets.{key} ({d['dataroot_gt']})", protocol_overrides={})

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The full training state (CPU tensors and plain containers only)."""
        rng = _rng_state()
        if self.world_size > 1:
            all_rng: list[Any] = [None] * self.world_size
            dist.all_gather_object(all_rng, rng)
        else:
            all_rng = [rng]
        net = _unwrap(self.net)
        st = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "iter": self.iteration,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "seed": self.seed,
            "sampler": {"epoch": self.epoch, "position": self.samples_in_epoch, "world_size": self.world_size,
                        "batch_size": self.batch_size},
            "params": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "params_ema": None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
            "optimizers": [_to_cpu(self.optimizer.state_dict())],
            "schedulers": [] if self.scheduler is None else [self.scheduler.state_dict()],
            "scaler": self.scaler.state_dict(),
            "rng": all_rng,
            "nonfinite": {"total": self.skipped_total, "consecutive": self.skipped_consecutive},
            "best": _plain(self.best),
            "finetuned_from": None if self._finetune_from is None else str(self._finetune_from),
            "options": json.loads(json.dumps(options_to_yaml_dict(self.opt), default=str)),
        }
        return st

    def _restore(self, st: Mapping[str, Any]) -> None:
        net = _unwrap(self.net)
        try:
            net.load_state_dict(st["params"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.resume_path}: the saved network does not fit network_g: {exc}") from exc
        if self.ema is not None:
            if st.get("params_ema") is None:
                raise CheckpointError(f"{self.resume_path}: EMA is on (train.ema_decay) but the state has no EMA")
            self.ema.load_state_dict(st["params_ema"])
        self.optimizer.load_state_dict(st["optimizers"][0])
        if self.scheduler is not None and st["schedulers"]:
            self.scheduler.load_state_dict(st["schedulers"][0])
        if st.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(st["scaler"])
        self.iteration = int(st["iteration"])
        self.epoch = int(st["epoch"])
        sp = st["sampler"]
        pos = int(sp["position"])
        if int(sp["world_size"]) != self.world_size:
            pos = (pos * int(sp["world_size"])) // self.world_size
            warnings.warn(f"{self.resume_path}: saved with {sp['world_size']} process(es), resumed with "
                          f"{self.world_size}: the data order continues from the same epoch position but the "
                          "run is no longer bit-identical to an uninterrupted one", ColorfidWarning, stacklevel=3)
        self.samples_in_epoch = min(pos, self.sampler.num_samples)
        self.skipped_total = int(st["nonfinite"]["total"])
        self.skipped_consecutive = int(st["nonfinite"]["consecutive"])
        self.best = dict(st.get("best") or {})
        rng = st["rng"]
        _set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])
        ft = st.get("finetuned_from")
        self._finetune_from = Path(ft) if ft else None

    # ------------------------------------------------------------------ the step
    def _lrs(self, t: int) -> list[float]:
        if self.warmup_iter > 0 and t < self.warmup_iter:
            return [b * t / self.warmup_iter for b in self.base_lrs]
        if self.scheduler is not None:
            return self.scheduler.lr_at(t)
        return list(self.base_lrs)

    def _apply_loss_schedule(self, t: int) -> None:
        w = self.loss_schedule.weights(t)  # type: ignore[union-attr]
        if w == self._last_weights:
            return
        self._last_weights = w
        for key, module in self.losses.items():
            terms = getattr(module, "TERMS", ())
            sub = {k: v for k, v in w.items() if k in terms}
            if sub:
                module.set_weights(sub)  # type: ignore[operator]
            if key in w:
                self.outer_weights[key] = float(w[key])

    def compute_loss(self, pred: Tensor, gt: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its components (detached) for one batch; losses run in float32."""
        pred = pred.float()
        total: Tensor | None = None
        comps: dict[str, Tensor] = {}
        for key, module in self.losses.items():
            label = _loss_label(key)
            if self._wants_components[key]:
                value, parts = module(pred, gt, return_components=True)
                for k, v in parts.items():
                    if k != "total":
                        comps[f"{label}.{k}"] = v
            else:
                value = module(pred, gt)
            ow = self.outer_weights[key]
            if ow != 1.0:
                value = value * ow
            comps[label] = value.detach()
            total = value if total is None else total + value
        assert total is not None
        return total, comps

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """One iteration on ``batch`` (a dict with ``lq`` and ``gt``); returns the loss tensors.

        The returned dict holds ``l_total`` and every component, detached (DDP: this rank's).
        Raises :class:`~colorfid.errors.TrainingError` after ``max_nonfinite_steps`` non-finite
        steps in a row (each one is skipped: no weight, EMA or scaler-state change).
        """
        t = self.iteration + 1
        for g, lr in zip(self.optimizer.param_groups, self._lrs(t)):
            g["lr"] = lr
        if self.loss_schedule is not None:
            self._apply_loss_schedule(t)
        dev = self.device
        nb = dev.type == "cuda"
        lq = batch["lq"].to(dev, non_blocking=nb)
        gt = batch["gt"].to(dev, non_blocking=nb)
        if self.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp_dtype is not None:
            with torch.autocast(dev.type, dtype=self.amp_dtype):
                pred = self.net(lq)
        else:
            pred = self.net(lq)
        total, comps = self.compute_loss(pred, gt)
        self.scaler.scale(total).backward()
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.clip_norm is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, norm_type=self.clip_norm_type,
                                                   foreach=True)
        else:
            gnorm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True) if grads else total.new_zeros(())
        check = torch.stack([total.detach().float(), gnorm.detach().float().to(total.device)])
        if self.world_size > 1:
            dist.all_reduce(check)  # NaN/Inf anywhere -> every rank sees it and skips together
        finite = bool(torch.isfinite(check).all())
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(_unwrap(self.net))
            self.skipped_consecutive = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
            self.skipped_total += 1
            self.skipped_consecutive += 1
            logger.warning("iteration %d: non-finite loss or gradient (loss %s, grad norm %s); step skipped "
                           "(%d in a row, %d in total)", t, _fmt(check[0]), _fmt(check[1]),
                           self.skipped_consecutive, self.skipped_total)
            if self.skipped_consecutive >= self.max_nonfinite:
                self.iteration = t
                raise TrainingError(
                    f"{self.skipped_consecutive} consecutive non-finite training steps (iterations "
                    f"{t - self.skipped_consecutive + 1}..{t}; last loss {_fmt(check[0])}, gradient norm "
                    f"{_fmt(check[1])}); stopping (train.max_nonfinite_steps = {self.max_nonfinite}). Lower "
                    "train.optim_g.lr, set train.grad_clip_norm, or check the data for NaN/Inf. The last good "
                    f"checkpoint is {self.last_state or 'none (no state saved yet)'}")
        if self.scheduler is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)", category=UserWarning)
                self.scheduler.step()
        self.iteration = t
        out = {"l_total": total.detach()}
        out.update(comps)
        out["grad_norm"] = gnorm.detach()
        return out

    # ------------------------------------------------------------------ data
    def _next_batch(self) -> dict[str, Any]:
        if self._loader_iter is None:
            self.sampler.set_epoch(self.epoch, self.samples_in_epoch)
            self._loader_iter = iter(self.loader)
        try:
            batch = next(self._loader_iter)
        except StopIteration:
            self.epoch += 1
            self.samples_in_epoch = 0
            self.sampler.set_epoch(self.epoch, 0)
            self._loader_iter = iter(self.loader)
            batch = next(self._loader_iter)
        self.samples_in_epoch += self.batch_size
        return batch

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> tuple[Path, Path] | None:
        """Write ``models/net_g_{iter}.pth`` then ``training_states/{iter}.state`` (rank 0; all
        ranks must call it under DDP: the RNG states are gathered)."""
        st = self.state_dict()
        if not self.is_main:
            return None
        net_path = self.save_network()
        state_path = self.states_dir / f"{self.iteration}.state"
        atomic_torch_save(st, state_path)
        self.last_state = state_path
        logger.info("saved %s and %s", net_path, state_path)
        return net_path, state_path

    def save_network(self, path: Path | None = None) -> Path:
        """BasicSR layout ``{'params': ..., 'params_ema': ...}`` (rank 0 only)."""
        path = path or self.models_dir / f"net_g_{self.iteration}.pth"
        obj: dict[str, Any] = {"params": {k: v.detach().cpu() for k, v in _unwrap(self.net).state_dict().items()}}
        if self.ema is not None:
            obj["params_ema"] = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
        atomic_torch_save(obj, path)
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any] | None:
        """Evaluate on the validation sets (sharded across ranks), judge, record bests, report.

        Returns a summary dict on rank 0 (None elsewhere or without validation sets)."""
        if not self.val_sets:
            return None
        from ..evaluate import evaluate

        v = self.opt["val"]
        model = self.ema.module if self.val_use_ema else _unwrap(self.net)
        was_training = model.training
        cache_dir = self.root / "val_outputs"
        key = f"{self.opt['name']}-iter{self.iteration}{'-ema' if self.val_use_ema else ''}"
        sets = self.val_sets
        if self.world_size > 1:
            sets = [dataclasses.replace(s, pairs=list(s.pairs)[self.rank::self.world_size]) for s in self.val_sets]
            sets = [s for s in sets if s.pairs]
        t0 = time.perf_counter()
        part = None
        if sets:
            part = evaluate(model, sets, protocol=None if self.thresholds is None else
                            self.thresholds.metric_protocol(), device=self.device, tile=v["tile"],
                            overlap=v["overlap"], cache_dir=cache_dir, use_cache=bool(v["report"]),
                            cache_key=key, progress=False)
        model.train(was_training)
        _unwrap(self.net).train()  # evaluate() leaves the module it ran in eval mode
        if self.world_size > 1:
            parts: list[Any] = [None] * self.world_size
            dist.all_gather_object(parts, None if part is None else part.to_dict())
            if not self.is_main:
                return None
            results = _merge_shards([p for p in parts if p is not None], self.val_sets)
        else:
            results = part
        assert results is not None
        secs = time.perf_counter() - t0
        gate_report = None
        if self.thresholds is not None:
            from ..gate import judge

            try:
                gate_report = judge(results, self.thresholds)
            except UsageError as exc:  # data-dependent (e.g. an undefined metric): report, keep training
                logger.error("validation @ iter %d: the gate could not judge these results: %s", self.iteration, exc)
        summary = self._record_validation(results, gate_report, secs)
        return summary

    def _record_validation(self, results: Any, gate_report: Any, secs: float) -> dict[str, Any]:
        from ..metrics import METRICS

        v = self.opt["val"]
        it = self.iteration
        val_dir = self.root / "validation"
        val_dir.mkdir(parents=True, exist_ok=True)
        results.provenance["checkpoint"] = str(self.models_dir / f"net_g_{it}.pth")
        results.provenance["model"] = f"{self.opt['name']}@{it}{' (EMA)' if self.val_use_ema else ''}"
        results.save(val_dir / f"results_{it}.json")
        new_best = []
        values: dict[str, float | None] = {}
        for set_name in results.set_names:
            for m in v["best_metrics"]:
                try:
                    value = results.aggregate(set_name, m, "mean")
                except UnknownNameError:
                    continue
                k = f"{set_name}/{m}"
                values[k] = value
                if value is None:
                    continue
                spec = METRICS[m]
                score = value if spec.direction == "lower" else (-value if spec.direction == "higher"
                                                                  else abs(value - float(spec.target or 0.0)))
                old = self.best.get(k)
                if old is None or score < old["score"]:
                    self.best[k] = {"value": value, "score": score, "iter": it, "stat": "mean",
                                    "checkpoint": str(self.models_dir / f"net_g_{it}.pth"),
                                    "ema": self.val_use_ema}
                    new_best.append(k)
        if new_best and not (self.models_dir / f"net_g_{it}.pth").exists():
            self.save_network()  # the best checkpoint must exist on disk
        _atomic_write_text(self.root / "best.json", json.dumps(_plain(self.best), indent=2, sort_keys=True))
        passed = None if gate_report is None else bool(gate_report.passed)
        failing: list[str] = []
        if gate_report is not None:
            rows = gate_report.to_dict().get("rows", [])
            failing = [f"{r.get('set')}/{r.get('metric')}={_fmt(r.get('value'))} ({r.get('verdict')})"
                       for r in rows if str(r.get("verdict", "")).startswith("fail")]
        rec = {"iter": it, "epoch": self.epoch, "seconds": round(secs, 3), "gate_passed": passed,
               "failing": failing, "metrics": values, "new_best": new_best}
        hist_path = self.root / "val_history.jsonl"
        try:
            from ..report import append_history

            append_history(hist_path, results, gate_report)
        except Exception as exc:  # history is a convenience; never stop training for it
            logger.warning("could not append validation history %s: %s", hist_path, exc)
        if v["report"]:
            from ..report import write_report

            try:
                out = write_report(results, self.root / "reports" / f"val_{it}", gate_report=gate_report,
                                   history=hist_path if hist_path.exists() else None)
                rec["report"] = str(out)
            except Exception as exc:  # a report is evidence, not training: log and carry on
                logger.error("validation @ iter %d: could not write the HTML report: %s: %s", it,
                             type(exc).__name__, exc)
            # the report embeds its images; keep the 16-bit PNG outputs (results point at them) and
            # drop the float32 .npy copies, which would otherwise grow with every validation
            for npy in (self.root / "val_outputs").glob(f"{self.opt['name']}-iter{it}*/*/*.npy"):
                with contextlib.suppress(OSError):
                    npy.unlink()
        self.history.append(rec)
        with open(self.root / "val_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_plain(rec)) + "\n")
        shown = ", ".join(f"{k} {_fmt(x)}" for k, x in values.items())
        gate_txt = "" if passed is None else (" gate: PASS" if passed else f" gate: FAIL ({'; '.join(failing[:6])})")
        logger.info("validation @ iter %d (%.1fs): %s%s%s", it, secs, shown, gate_txt,
                    f"; new best: {', '.join(new_best)}" if new_best else "")
        if self._tb is not None:
            for k, x in values.items():
                if x is not None:
                    self._tb.add_scalar(f"val/{k}", x, it)
            if passed is not None:
                self._tb.add_scalar("val/gate_passed", float(passed), it)
        return rec

    # ------------------------------------------------------------------ logging
    def _setup_logging(self) -> None:
        if not self.is_main:  # only rank 0 logs; other ranks raise on errors
            h = logging.NullHandler()
            logger.addHandler(h)
            self._handlers.append(h)
            logger.propagate = False
            return
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        fh = logging.FileHandler(self.root / f"train_{self.opt['name']}_{stamp}.log", encoding="utf-8")
        fh.setFormatter(fmt)
        ch = _TqdmHandler(sys.stderr)
        ch.setFormatter(fmt)
        for h in (fh, ch):
            logger.addHandler(h)
            self._handlers.append(h)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the handlers above print; no second copy via the root logger
        if self.opt["logger"]["use_tb_logger"]:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("logger.use_tb_logger is true but tensorboard is not installed "
                              "(pip install tensorboard); no TensorBoard scalars are written", ColorfidWarning,
                              stacklevel=3)
            else:
                self._tb = SummaryWriter(log_dir=str(self.root / "tb_logger"))

    def _teardown_logging(self) -> None:
        for h in self._handlers:
            logger.removeHandler(h)
            h.close()
        self._handlers = []
        logger.propagate = True
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _prepare_experiment_dir(self) -> None:
        if not self.is_main:
            return
        if self.resume_path is None and self.root.exists() and any(self.root.iterdir()):
            stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
            archived = self.root.with_name(f"{self.root.name}_archived_{stamp}")
            self.root.rename(archived)
            self._archived = archived
        for d in (self.root, self.models_dir, self.states_dir):
            d.mkdir(parents=True, exist_ok=True)
        _sweep_temp_files(self.models_dir, self.states_dir)
        import yaml

        _atomic_write_text(self.root / f"options_{self.iteration}.yml",
                           yaml.safe_dump(options_to_yaml_dict(self.opt), sort_keys=False))
        if self._val_inputs_to_make:
            from ..io import read_image, write_image
            from .data import to_grayscale

            for gt, lq in self._val_inputs_to_make:
                if not lq.exists():
                    lq.parent.mkdir(parents=True, exist_ok=True)
                    write_image(lq, to_grayscale(read_image(gt)), bits=16)

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainSummary:
        """Run until ``train.total_iter``; returns a :class:`TrainSummary`."""
        from tqdm.auto import tqdm

        start_time = time.perf_counter()
        self._archived: Path | None = None
        self._prepare_experiment_dir()
        if self.world_size > 1:
            dist.barrier()
        self._setup_logging()
        o = self.opt
        lg = o["logger"]
        val_freq = o["val"]["val_freq"] if o["val"] is not None else None
        try:
            if self.is_main:
                if self._archived is not None:
                    logger.info("an earlier run was in %s; moved to %s", self.root, self._archived)
                n_params = sum(p.numel() for p in self.params)
                mode = (f"resume from {self.resume_path} at iteration {self.iteration}" if self.resume_path else
                        f"fine-tune from {self._finetune_from}" if self._finetune_from else "from scratch")
                logger.info("colorfid train %s: %s; %s params; device %s x%d; amp %s; channels_last %s; seed %d; "
                            "%d training pairs, batch %d per process", o["name"], mode, f"{n_params:,}", self.device,
                            self.world_size, self.amp_dtype, self.channels_last, self.seed, len(self.dataset),
                            self.batch_size)
                if getattr(self, "_pending_log", None):
                    logger.info(self._pending_log)
                if self.val_sets:
                    gate_src = "none (val.gate: false or no thresholds file found)" if self.thresholds is None \
                        else self.thresholds.source
                    logger.info("validation: %d set(s) (%s), %s weights, gate thresholds: %s", len(self.val_sets),
                                ", ".join(s.name for s in self.val_sets), "EMA" if self.val_use_ema else "raw",
                                gate_src)
            show = self.progress if self.progress is not None else sys.stderr.isatty()
            self._bar = tqdm(total=self.total_iter, initial=self.iteration, desc=o["name"], unit="it",
                             disable=not (show and self.is_main), dynamic_ncols=True, file=sys.stderr)
            window_t0 = time.perf_counter()
            window_n = 0
            data_time = 0.0
            saved_at = validated_at = -1
            while self.iteration < self.total_iter:
                td = time.perf_counter()
                batch = self._next_batch()
                data_time += time.perf_counter() - td
                stats = self.train_step(batch)
                window_n += 1
                it = self.iteration
                self._bar.update(1)
                if it % lg["print_freq"] == 0 or it == self.total_iter:
                    now = time.perf_counter()
                    self._log_step(stats, window_n / max(now - window_t0, 1e-9), data_time / max(window_n, 1))
                    window_t0, window_n, data_time = now, 0, 0.0
                if it % lg["save_checkpoint_freq"] == 0:
                    self.save_checkpoint()
                    saved_at = it
                if val_freq and it % val_freq == 0:
                    self.validate()
                    validated_at = it
            if saved_at != self.iteration:
                self.save_checkpoint()
            if self.val_sets and validated_at != self.iteration:
                self.validate()
            if self.is_main:
                logger.info("done: iteration %d, epoch %d, %d skipped step(s), %.1fs", self.iteration, self.epoch,
                            self.skipped_total, time.perf_counter() - start_time)
        finally:
            if self._bar is not None:
                self._bar.close()
            self._loader_iter = None
            self._teardown_logging()
        return TrainSummary(iteration=self.iteration, epoch=self.epoch, experiments_root=self.root,
                            last_checkpoint=self.last_checkpoint, last_state=self.last_state,
                            skipped_steps=self.skipped_total, best=dict(self.best), history=list(self.history),
                            seconds=time.perf_counter() - start_time)

    def close(self) -> None:
        """Release the process group if this trainer created it."""
        self._loader_iter = None
        if self._owns_pg and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._owns_pg = False

    def _log_step(self, stats: Mapping[str, Tensor], its: float, data_time: float) -> None:
        names = list(stats)
        vec = torch.stack([stats[k].detach().float().reshape(()) for k in names])
        if self.world_size > 1:
            dist.all_reduce(vec)
            vec /= self.world_size
        if not self.is_main:
            return
        vals = dict(zip(names, vec.tolist()))
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        it = self.iteration
        losses = " ".join(f"{k}: {v:.4e}" for k, v in vals.items())
        logger.info("[%s][epoch:%3d, iter:%8d, lr:(%s)] [it/s: %.2f, data: %.3fs] %s%s", self.opt["name"],
                    self.epoch, it, ",".join(f"{lr:.3e}" for lr in lrs), its, data_time, losses,
                    f" skipped: {self.skipped_total}" if self.skipped_total else "")
        rec = {"iter": it, "epoch": self.epoch, "lr": lrs, "it_s": its, "data_s": data_time,
               "losses": vals, "skipped": self.skipped_total}
        with open(self.root / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_plain(rec)) + "\n")
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {vals.get('l_total', float('nan')):.4g} lr {lrs[0]:.2e}", refresh=False)
        if self._tb is not None:
            for k, v in vals.items():
                self._tb.add_scalar(f"losses/{k}", v, it)
            self._tb.add_scalar("lr", lrs[0], it)
            self._tb.add_scalar("it_per_s", its, it)


# =============================================================================================
# helpers
# =============================================================================================


def _fmt(x: Any) -> str:
    if isinstance(x, Tensor):
        x = float(x)
    if x is None:
        return "n/a"
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


def _load_thresholds(spec: Path | Mapping[str, Any] | str, source: str) -> Any:
    """``val.gate``: a thresholds TOML path, an inline mapping (the TOML's content), or ``auto``
    (``colorfid.toml`` / ``[tool.colorfid]`` in the cwd, else the bundled ``golden/colorfid.toml``,
    else no gate)."""
    from .. import gate

    if isinstance(spec, Mapping):
        return gate.parse_thresholds(dict(spec), source=f"{source}: val.gate")
    if spec == "auto":
        found = gate.find_thresholds()
        return None if found is None else gate.load_thresholds(found)
    return gate.load_thresholds(spec)


def _merge_shards(parts: Sequence[Mapping[str, Any]], sets: Sequence[Any]) -> Any:
    """Merge per-rank results of sharded sets back into one Results in the sets' image order."""
    from ..results import Results, aggregate_metric, worst_images

    results = [Results.from_dict(p, source="validation shard") for p in parts]
    merged_sets: dict[str, dict[str, Any]] = {}
    for s in sets:
        shards = [r.sets[s.name] for r in results if s.name in r.sets]
        if not shards:
            continue
        order = {p.name: i for i, p in enumerate(s.pairs)}
        images = sorted((im for sh in shards for im in sh["images"]), key=lambda im: order.get(im["name"], 0))
        names: list[str] = []
        for im in images:
            for k in im["metrics"]:
                if k not in names:
                    names.append(k)
        d = dict(shards[0])
        d["images"] = images
        d["aggregate"] = {k: aggregate_metric(k, [im["metrics"].get(k) for im in images]) for k in names}
        proto = d.get("protocol") or {}
        d["worst"] = worst_images(images, int(proto.get("worst_k", 3)))
        merged_sets[s.name] = d
    first = results[0]
    return Results(provenance=dict(first.provenance), protocol=dict(first.protocol), sets=merged_sets,
                      created=first.created)


def train(opt: Mapping[str, Any] | str | os.PathLike, **kwargs: Any) -> TrainSummary:
    """Build a :class:`Trainer` (same keyword arguments) and train; releases the process group."""
    trainer = Trainer(opt, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()
