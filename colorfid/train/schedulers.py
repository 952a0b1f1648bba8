"""Learning-rate schedulers of BasicSR / NAFNet, in closed form: the rate is a function of the
iteration only, so a resumed run continues exactly."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from ..errors import ConfigError, UnknownNameError

__all__ = ["CosineAnnealingRestartLR", "TrueCosineAnnealingLR", "MultiStepRestartLR", "build_scheduler",
           "fit_schedule"]


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


def _positions(train: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Iterations at which the schedule of a normalised ``train`` section changes course."""
    pos: list[tuple[str, int]] = []
    sch = train.get("scheduler") or {}
    if sch.get("type") == "TrueCosineAnnealingLR":
        pos.append(("scheduler.T_max", int(sch["T_max"])))
    elif sch.get("type") == "CosineAnnealingRestartLR":
        ends = [sum(sch["periods"][: i + 1]) for i in range(len(sch["periods"]))]
        pos += [(f"scheduler.periods[{i}] (ends at {e})", e) for i, e in enumerate(ends)]
    elif sch.get("type") in ("MultiStepLR", "MultiStepRestartLR"):
        pos += [(f"scheduler.milestones[{i}]", int(m)) for i, m in enumerate(sch.get("milestones") or [])]
    stages = ((train.get("loss_schedule") or {}).get("stages")) or []
    for i, st in enumerate(stages):
        if isinstance(st, Mapping) and isinstance(st.get("start"), int) and st["start"] > 0:
            pos.append((f"loss_schedule.stages[{i}].start", st["start"]))
    if train.get("warmup_iter"):
        pos.append(("warmup_iter", int(train["warmup_iter"])))
    return pos


def _scaled(v: int, f: float, lo: int = 0) -> int:
    return max(lo, int(round(v * f)))


def fit_schedule(train: dict[str, Any], *, scale: bool = False, source: str = "options") -> list[str]:
    """Check a normalised ``train`` section's schedule against ``total_iter``; return warnings.

    A ``total_iter`` shorter than the cosine scheduler's length (``T_max``, the periods' ends), a
    milestone, a loss-schedule stage start or ``warmup_iter`` means the run ends before that part
    of the schedule happens (the rate never anneals, a stage's loss terms never switch on). Without
    ``scale`` each such position is named in the returned warning. With ``scale`` the schedule is
    scaled in place by ``f = total_iter / L``, ``L`` the cosine scheduler's length (``T_max`` or
    the sum of ``periods``): ``T_max`` / periods (summing to ``total_iter``), milestones, stage
    starts and warm-ups, ``warmup_iter`` -- the shape of the schedule kept on the shorter run; a
    schedule without a cosine scheduler has no length to scale from (ConfigError).
    """
    total = int(train["total_iter"])
    late = [(k, v) for k, v in _positions(train) if v > total]
    if not late:
        return []
    where = ", ".join(f"train.{k} = {v}" for k, v in late)
    if not scale:
        return [f"{source}: train.total_iter ({total}) ends before {where}: that part of the schedule never happens "
                "(the learning rate does not anneal, a loss-schedule stage does not start); scale the schedule to "
                "total_iter with --scale-schedule (train.scale_schedule: true) or shorten it"]
    sch = train.get("scheduler") or {}
    if sch.get("type") == "TrueCosineAnnealingLR":
        length = int(sch["T_max"])
    elif sch.get("type") == "CosineAnnealingRestartLR":
        length = sum(int(p) for p in sch["periods"])
    else:
        raise ConfigError(f"{source}: train.scale_schedule: the schedule has no length to scale from (no cosine "
                          f"scheduler); shorten {where} by hand")
    f = total / length
    if sch.get("type") == "TrueCosineAnnealingLR":
        sch["T_max"] = total
    else:
        periods = [_scaled(p, f, 1) for p in sch["periods"]]
        periods[-1] = max(1, total - sum(periods[:-1]))
        sch["periods"] = periods
    stages = ((train.get("loss_schedule") or {}).get("stages")) or []
    prev = 0
    for i, st in enumerate(stages):
        if not isinstance(st, Mapping) or i == 0:
            continue
        st["start"] = max(prev + 1, _scaled(int(st["start"]), f))
        prev = st["start"]
        w = st.get("warmup")
        if isinstance(w, int) and not isinstance(w, bool):
            st["warmup"] = _scaled(w, f)
        elif isinstance(w, Mapping):
            st["warmup"] = {k: _scaled(int(v), f) for k, v in w.items()}
    if train.get("warmup_iter"):
        train["warmup_iter"] = _scaled(int(train["warmup_iter"]), f)
    return [f"{source}: schedule scaled by {f:.4g} to train.total_iter ({total}) from its length {length} "
            f"(train.scale_schedule): was {where}"]
