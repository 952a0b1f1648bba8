"""Loss-term weights as a function of the training iteration: stages and linear warm-ups,
validated so that no schedule silently switches off pixel supervision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, UnknownNameError, UsageError

__all__ = ["RECONSTRUCTION_TERMS", "ScheduleStage", "LossWeightSchedule"]

#: Terms a schedule may not ramp to zero without ``allow_zero_reconstruction=True``.
RECONSTRUCTION_TERMS: tuple[str, ...] = ("l1", "ssim")
_STAGE_KEYS = ("start", "weights", "warmup")
_SCHEDULE_KEYS = ("stages", "allow_zero_reconstruction", "reconstruction_keys", "known_keys")


@dataclass(frozen=True)
class ScheduleStage:
    """One stage: from iteration ``start`` the named weights take the values in ``weights``.

    ``warmup`` ramps them linearly from the value in effect just before ``start`` (0 for a name
    not set before) over that many iterations: an int applies to every name of the stage, a
    mapping ``{name: iterations}`` to the names it lists (the others switch at ``start``).
    Names not in ``weights`` keep their previous value.
    """

    start: int
    weights: Mapping[str, float]
    warmup: int | Mapping[str, int] = 0

    def warmup_of(self, key: str) -> int:
        if isinstance(self.warmup, Mapping):
            return int(self.warmup.get(key, 0))
        return int(self.warmup)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class LossWeightSchedule:
    """Loss-term weights as a function of the training iteration: stages + linear warm-ups.

    ::

        sched = LossWeightSchedule.from_dict({
            "stages": [
                {"start": 0, "weights": {"l1": 1.0, "ssim": 1.0, "delta_e": 0.01}},
                {"start": 2000, "weights": {"chroma": 2.0, "hue": 5.0}, "warmup": 1000},
            ]})
        loss.set_weights(sched.weights(iteration))   # each step

    Refuses (:class:`~colorfid.errors.ConfigError`) any schedule under which a reconstruction
    term (``reconstruction_keys``, default ``("l1", "ssim")``) is 0 at some iteration — set to 0,
    or ramped up from 0 — unless ``allow_zero_reconstruction=True``: training without pixel
    supervision is almost always a typo. Weights must
    be finite and >= 0; the first stage starts at 0 and starts strictly increase.
    ``known_keys`` (optional) lists the allowed names (e.g. ``ColorAwareLoss.TERMS``); an
    unknown name then raises :class:`~colorfid.errors.UnknownNameError`.
    """

    stages: Sequence[ScheduleStage | Mapping[str, Any]]
    allow_zero_reconstruction: bool = False
    reconstruction_keys: Sequence[str] = RECONSTRUCTION_TERMS
    known_keys: Sequence[str] | None = None
    _stages: tuple[ScheduleStage, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.stages, (str, bytes, Mapping)) or not isinstance(self.stages, Sequence):
            raise ConfigError("LossWeightSchedule: 'stages' must be a list of stages")
        if len(self.stages) == 0:
            raise ConfigError("LossWeightSchedule: 'stages' is empty; give at least one stage starting at 0")
        if not isinstance(self.allow_zero_reconstruction, bool):
            raise ConfigError(
                f"LossWeightSchedule: allow_zero_reconstruction must be true/false, got {self.allow_zero_reconstruction!r}"
            )
        self.reconstruction_keys = tuple(self.reconstruction_keys)
        if self.known_keys is not None:
            self.known_keys = tuple(self.known_keys)
        stages = tuple(self._parse_stage(i, s) for i, s in enumerate(self.stages))
        if stages[0].start != 0:
            raise ConfigError(f"LossWeightSchedule: stages[0].start must be 0, got {stages[0].start}")
        for i in range(1, len(stages)):
            if stages[i].start <= stages[i - 1].start:
                raise ConfigError(
                    f"LossWeightSchedule: stages[{i}].start ({stages[i].start}) must be greater than "
                    f"stages[{i - 1}].start ({stages[i - 1].start})"
                )
        self._stages = stages
        self._check_reconstruction()

    def _parse_stage(self, i: int, s: ScheduleStage | Mapping[str, Any]) -> ScheduleStage:
        where = f"LossWeightSchedule: stages[{i}]"
        if isinstance(s, ScheduleStage):
            raw: Mapping[str, Any] = {"start": s.start, "weights": s.weights, "warmup": s.warmup}
        elif isinstance(s, Mapping):
            raw = s
            unknown = [k for k in raw if k not in _STAGE_KEYS]
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {list(_STAGE_KEYS)}")
        else:
            raise ConfigError(f"{where}: expected a mapping with keys {list(_STAGE_KEYS)}, got {type(s).__name__}")
        if "start" not in raw or "weights" not in raw:
            raise ConfigError(f"{where}: needs 'start' and 'weights'")
        start = raw["start"]
        if not _is_int(start) or start < 0:
            raise ConfigError(f"{where}.start must be an integer >= 0, got {start!r}")
        weights = raw["weights"]
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError(f"{where}.weights must be a non-empty mapping name -> weight, got {weights!r}")
        clean: dict[str, float] = {}
        for k, v in weights.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}.weights: names must be strings, got {k!r}")
            if self.known_keys is not None and k not in self.known_keys:
                raise UnknownNameError(f"{where}.weights: unknown term {k!r}; known: {list(self.known_keys)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{where}.weights.{k} must be a finite number >= 0, got {v!r}")
            clean[k] = float(v)
        warmup = raw.get("warmup", 0)
        if isinstance(warmup, Mapping):
            wm: dict[str, int] = {}
            for k, v in warmup.items():
                if k not in clean:
                    raise ConfigError(
                        f"{where}.warmup.{k}: {k!r} is not among this stage's weights {sorted(clean)}"
                    )
                if not _is_int(v) or v < 0:
                    raise ConfigError(f"{where}.warmup.{k} must be an integer >= 0, got {v!r}")
                wm[k] = v
            warmup = wm
        elif not _is_int(warmup) or warmup < 0:
            raise ConfigError(f"{where}.warmup must be an integer >= 0 or a mapping name -> integer, got {warmup!r}")
        return ScheduleStage(start=start, weights=clean, warmup=warmup)

    def _check_reconstruction(self) -> None:
        if self.allow_zero_reconstruction:
            return
        prev: dict[str, float] = {}
        for i, st in enumerate(self._stages):
            for k, v in st.weights.items():
                if k not in self.reconstruction_keys:
                    continue
                if v == 0:
                    raise ConfigError(
                        f"LossWeightSchedule: stages[{i}].weights.{k} = 0 sets reconstruction term {k!r} to "
                        f"zero from iteration {st.start}: the model would train without pixel supervision. "
                        "Pass allow_zero_reconstruction=True (YAML: allow_zero_reconstruction: true) if intended."
                    )
                if st.warmup_of(k) > 0 and prev.get(k, 0.0) == 0:
                    raise ConfigError(
                        f"LossWeightSchedule: stages[{i}] ramps reconstruction term {k!r} up from 0 "
                        f"(warmup {st.warmup_of(k)}), so it is 0 at iteration {st.start}. Give it a non-zero "
                        "value in an earlier stage or no warmup, or pass allow_zero_reconstruction=True."
                    )
            prev.update(st.weights)

    # -- queries -----------------------------------------------------------------------------
    def weights(self, iteration: int) -> dict[str, float]:
        """The weights in effect at ``iteration`` (every name set by a stage so far)."""
        if not _is_int(iteration) or iteration < 0:
            raise UsageError(f"LossWeightSchedule.weights: iteration must be an integer >= 0, got {iteration!r}")
        cur: dict[str, float] = {}
        st_list = self._stages
        for j, st in enumerate(st_list):
            if st.start > iteration:
                break
            nxt = st_list[j + 1].start if j + 1 < len(st_list) else None
            at = nxt if nxt is not None and nxt <= iteration else iteration
            new = dict(cur)
            for k, v in st.weights.items():
                prev = cur.get(k, 0.0)
                w = st.warmup_of(k)
                frac = 1.0 if w == 0 else min(1.0, (at - st.start) / w)
                new[k] = prev + (v - prev) * frac
            cur = new
        return cur

    @property
    def keys(self) -> tuple[str, ...]:
        """Every name any stage sets, in first-appearance order."""
        seen: dict[str, None] = {}
        for st in self._stages:
            for k in st.weights:
                seen.setdefault(k, None)
        return tuple(seen)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossWeightSchedule:
        """Build from plain data (as read from YAML/TOML). Unknown keys raise ConfigError."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"LossWeightSchedule.from_dict: expected a mapping, got {type(d).__name__}")
        unknown = [k for k in d if k not in _SCHEDULE_KEYS]
        if unknown:
            raise ConfigError(f"LossWeightSchedule: unknown key(s) {unknown}; known: {list(_SCHEDULE_KEYS)}")
        if "stages" not in d:
            raise ConfigError("LossWeightSchedule: missing 'stages'")
        kw: dict[str, Any] = {"stages": d["stages"]}
        if "allow_zero_reconstruction" in d:
            kw["allow_zero_reconstruction"] = d["allow_zero_reconstruction"]
        for key in ("reconstruction_keys", "known_keys"):
            if key in d and d[key] is not None:
                v = d[key]
                if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
                    raise ConfigError(f"LossWeightSchedule: {key} must be a list of names, got {v!r}")
                kw[key] = tuple(v)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {
            "stages": [
                {"start": s.start, "weights": dict(s.weights),
                 "warmup": dict(s.warmup) if isinstance(s.warmup, Mapping) else s.warmup}
                for s in self._stages
            ],
            "allow_zero_reconstruction": self.allow_zero_reconstruction,
            "reconstruction_keys": list(self.reconstruction_keys),
        }
        if self.known_keys is not None:
            out["known_keys"] = list(self.known_keys)
        return out
