"""The regression gate: thresholds (TOML) + optional baseline (JSON) + :class:`Results` -> verdicts.

Thresholds file
---------------
``colorfid.toml`` (or ``[tool.colorfid]`` in ``pyproject.toml``)::

    stress_sets = ["saturated_paint", "./sets/walls"]   # optional: sets to run (names or paths)
    baseline = "golden/baselines/main.json"            # optional: baseline file
    allow_missing_baseline = false                      # optional

    [protocol]                   # optional MetricProtocol overrides (colorfid.metrics)
    hc_saturation = 0.5

    [defaults]                   # bounds for every set: metric = { ... } or false
    de00_p95     = { max = 10.0, worse_abs = 0.5 }
    sat_ratio_hc = { target = 1.0, band = 0.10, worse_abs = 0.02 }
    psnr         = { min = 20.0, worse_abs = 0.3, stat = "mean" }

    [sets.saturated_paint]       # per-set overrides, merged over [defaults]
    sat_ratio_hc = { band = 0.08 }
    hue_drift_hc = false         # switch a default off for this set

Bound keys: ``max``, ``min``, ``target`` + ``band`` (two-sided: ``|value - target| <= band``;
``target`` defaults to the metric's registry target), ``worse_abs`` / ``worse_rel`` (regression
slack against the baseline: a value may be worse than the baseline by at most
``max(worse_abs, worse_rel * |baseline|)``), ``stat`` (which aggregate over the set's images:
``mean`` | ``median`` | ``p95`` | ``worst``, default ``mean``; see :mod:`colorfid.evaluate`).
A per-set entry overrides the default entry field by field, except that naming any of
``min``/``max``/``target``/``band`` replaces the default's limits as a whole.

Which way is "worse" comes from the metric registry :data:`colorfid.metrics.METRICS`
(lower / higher / target). Verdicts per set x metric:

* ``fail_bound`` — outside the bound (also when the metric is undefined because the model's
  output has non-finite values);
* ``fail_regression`` — within the bound but worse than the baseline by more than the slack
  (with no ``worse_abs``/``worse_rel`` the slack is 0, up to 1e-9 relative float noise);
* ``improved`` — better than the baseline by more than the slack (improvements never fail);
* ``new`` — a baseline is in use but has no value for this set/metric;
* ``pass`` — everything else.

Usage errors (:class:`~colorfid.errors.UsageError` subclasses, naming the file and the key):
unknown metric / key / set, missing set path, non-number bound, min > max, empty band,
an entry that checks nothing, an undefined metric (empty mask) where a bound applies, a set
with no images or no applicable check (a vacuous pass is never a pass), a missing or corrupt
baseline (unless allowed), a baseline measured under a different protocol.

Baselines are small JSON files (``"schema": "colorfid.baseline"``) of per-set aggregates and
the protocol each set was measured under; :func:`write_baseline` writes only the sets that ran
and keeps the others, atomically.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import metrics as _metrics
from .errors import BaselineError, ColorfidError, ConfigError, StressSetError, UnknownNameError, UsageError
from .evaluate import (
    AGGREGATE_STATS,
    RECORDED_KEYS,
    ModelSource,
    Results,
    _utc_now,
    atomic_write_json,
    badness,
    effective_protocol,
    protocol_dict,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "VERDICTS",
    "Bound",
    "Thresholds",
    "Baseline",
    "GateRow",
    "GateReport",
    "GatePlan",
    "load_thresholds",
    "parse_thresholds",
    "find_thresholds",
    "load_baseline",
    "write_baseline",
    "judge",
    "plan_gate",
    "format_report",
]

VERDICTS = ("pass", "fail_bound", "fail_regression", "improved", "new")
PASSING = ("pass", "improved", "new")
BASELINE_SCHEMA = "colorfid.baseline"
BASELINE_SCHEMA_VERSION = 1
GATE_SCHEMA = "colorfid.gate"
TOP_KEYS = ("stress_sets", "baseline", "allow_missing_baseline", "protocol", "defaults", "sets")
BOUND_KEYS = ("min", "max", "target", "band", "worse_abs", "worse_rel", "stat")
_LIMIT_KEYS = ("min", "max", "target", "band")
_NUMBER_KEYS = ("min", "max", "target", "band", "worse_abs", "worse_rel")
#: Relative float noise a regression check tolerates when no slack is given.
NOISE_REL = 1e-9


def _unknown(word: str, known: Sequence[str]) -> str:
    m = difflib.get_close_matches(str(word), list(known), 1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000 or a < 0.001:
        return f"{v:.3g}"
    return f"{v:.4g}"


# --------------------------------------------------------------------------- bounds


@dataclasses.dataclass(frozen=True)
class Bound:
    """A gate entry for one metric: limits, regression slack, which aggregate.

    ``key`` says where it was written (``"defaults.de00_p95"``, ``"sets.X.sat_ratio_hc"``).
    """

    metric: str
    stat: str = "mean"
    min: float | None = None
    max: float | None = None
    target: float | None = None
    band: float | None = None
    worse_abs: float | None = None
    worse_rel: float | None = None
    key: str = ""

    @property
    def lo(self) -> float | None:
        cands = [x for x in (self.min, None if self.target is None else self.target - (self.band or 0.0)) if x is not None]
        return max(cands) if cands else None

    @property
    def hi(self) -> float | None:
        cands = [x for x in (self.max, None if self.target is None else self.target + (self.band or 0.0)) if x is not None]
        return min(cands) if cands else None

    @property
    def has_limits(self) -> bool:
        return self.lo is not None or self.hi is not None

    def within(self, value: float) -> bool:
        """Is ``value`` inside the limits (inclusive)? True when there are none."""
        lo, hi = self.lo, self.hi
        return (lo is None or value >= lo) and (hi is None or value <= hi)

    def slack(self, baseline: float) -> float:
        """How much worse than ``baseline`` a value may be (>= float noise)."""
        s = NOISE_REL * max(1.0, abs(baseline))
        if self.worse_abs is not None:
            s = max(s, self.worse_abs)
        if self.worse_rel is not None:
            s = max(s, self.worse_rel * abs(baseline))
        return s

    def text(self) -> str:
        """Human text of the limits: ``≤ 10``, ``≥ 20``, ``1 ± 0.1``, ``[0.9, 1.1]``; "" if none."""
        if self.target is not None and self.band is not None and self.min is None and self.max is None:
            return f"{_fmt(self.target)} ± {_fmt(self.band)}"
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"[{_fmt(lo)}, {_fmt(hi)}]"
        if hi is not None:
            return f"≤ {_fmt(hi)}"
        if lo is not None:
            return f"≥ {_fmt(lo)}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _check_entry(raw: Any, metric: str, key: str, source: str) -> dict[str, Any] | None:
    """Validate one raw ``metric = {...}`` entry (types, names). Returns the dict, or None = off."""
    try:
        _metrics.get_metric(metric)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{source}: key {key!r}: {exc}") from None
    if raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key {key!r}: expected a table such as {{ max = 10.0 }} or false, got {raw!r}"
        )
    entry: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in BOUND_KEYS:
            raise ConfigError(
                f"{source}: key '{key}.{k}': unknown bound key{_unknown(k, BOUND_KEYS)}; known: {', '.join(BOUND_KEYS)}"
            )
        if k == "stat":
            if v not in AGGREGATE_STATS:
                raise ConfigError(
                    f"{source}: key '{key}.stat': {v!r} is not one of {', '.join(AGGREGATE_STATS)}"
                )
            entry[k] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{source}: key '{key}.{k}': expected a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ConfigError(f"{source}: key '{key}.{k}': expected a finite number, got {v!r}")
        if k in ("band", "worse_abs", "worse_rel") and v < 0:
            raise ConfigError(f"{source}: key '{key}.{k}': must be >= 0, got {v!r}")
        entry[k] = float(v)
    if not entry:
        raise ConfigError(f"{source}: key {key!r}: empty table checks nothing; give max/min/target+band or write false")
    return entry


def _make_bound(metric: str, entry: Mapping[str, Any], key: str, source: str) -> Bound:
    spec = _metrics.get_metric(metric)
    target, band = entry.get("target"), entry.get("band")
    if band is not None and target is None:
        if spec.target is None:
            raise ConfigError(
                f"{source}: key '{key}.band': {metric} has no registry target ({spec.direction} is better); "
                "give target = ... too, or use min/max"
            )
        target = float(spec.target)
    if target is not None and band is None:
        raise ConfigError(f"{source}: key '{key}.target': a target needs a band (|value - target| <= band)")
    b = Bound(
        metric=metric,
        stat=str(entry.get("stat", "mean")),
        min=entry.get("min"),
        max=entry.get("max"),
        target=target,
        band=band,
        worse_abs=entry.get("worse_abs"),
        worse_rel=entry.get("worse_rel"),
        key=key,
    )
    if b.min is not None and b.max is not None and b.min > b.max:
        raise ConfigError(f"{source}: key {key!r}: min ({_fmt(b.min)}) is above max ({_fmt(b.max)})")
    if b.lo is not None and b.hi is not None and b.lo > b.hi:
        raise ConfigError(f"{source}: key {key!r}: the limits leave nothing allowed ({b.lo:g} > {b.hi:g})")
    if not b.has_limits and b.worse_abs is None and b.worse_rel is None:
        raise ConfigError(f"{source}: key {key!r}: checks nothing; give max/min/target+band or worse_abs/worse_rel")
    return b


def _merge(default: Mapping[str, Any] | None, override: Mapping[str, Any]) -> dict[str, Any]:
    if default is None:
        return dict(override)
    merged = dict(default)
    if any(k in override for k in _LIMIT_KEYS):
        for k in _LIMIT_KEYS:
            merged.pop(k, None)
    merged.update(override)
    return merged


@dataclasses.dataclass
class Thresholds:
    """A parsed thresholds file. Build with :func:`load_thresholds` / :func:`parse_thresholds`."""

    source: str
    protocol: dict[str, Any]
    defaults: dict[str, dict[str, Any] | None]
    sets: dict[str, dict[str, dict[str, Any] | None]]
    stress_sets: list[str] = dataclasses.field(default_factory=list)
    baseline: Path | None = None
    allow_missing_baseline: bool = False
    path: Path | None = None
    prefix: str = ""

    def metric_protocol(self) -> Any:
        """The base ``MetricProtocol`` (defaults + ``[protocol]``)."""
        return effective_protocol(self.protocol, source=f"{self.source} [{self.prefix}protocol]")

    def stress_set_names(self) -> list[str]:
        return [Path(s).name if _looks_like_path(s) else s for s in self.stress_sets]

    def bounds_for(self, set_name: str) -> dict[str, Bound]:
        """The entries that apply to ``set_name``: ``[defaults]`` merged with ``[sets.<name>]``."""
        out: dict[str, Bound] = {}
        section = self.sets.get(set_name, {})
        for metric in list(self.defaults) + [m for m in section if m not in self.defaults]:
            if metric in section:
                over = section[metric]
                if over is None:
                    continue
                entry = _merge(self.defaults.get(metric), over)
                key = f"{self.prefix}sets.{set_name}.{metric}"
            else:
                d = self.defaults[metric]
                if d is None:
                    continue
                entry, key = d, f"{self.prefix}defaults.{metric}"
            out[metric] = _make_bound(metric, entry, key, self.source)
        return out


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.startswith(".") or s.startswith("~")


def parse_thresholds(
    data: Any, *, source: str = "<thresholds>", base_dir: str | os.PathLike | None = None, prefix: str = ""
) -> Thresholds:
    """Validate a thresholds mapping (the TOML's content). Every problem is a ConfigError /
    UnknownNameError / StressSetError naming ``source`` and the key (with ``prefix``, e.g.
    ``"tool.colorfid."``). Every bound is built once here, so a bad file fails before any run."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    for k in data:
        if k not in TOP_KEYS:
            raise ConfigError(
                f"{source}: key '{prefix}{k}': unknown key{_unknown(k, TOP_KEYS)}; known: {', '.join(TOP_KEYS)}"
            )
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    protocol = data.get("protocol", {})
    if not isinstance(protocol, Mapping):
        raise ConfigError(f"{source}: key '{prefix}protocol' must be a table")
    for k, v in protocol.items():
        if k in RECORDED_KEYS:
            raise ConfigError(f"{source}: key '{prefix}protocol.{k}' is fixed by colorfid and cannot be set")
    try:
        effective_protocol(dict(protocol), source="")
    except ConfigError as exc:
        raise ConfigError(f"{source}: key '{prefix}protocol': {str(exc).lstrip(': ')}") from None
    defaults_raw = data.get("defaults", {})
    if not isinstance(defaults_raw, Mapping):
        raise ConfigError(f"{source}: key '{prefix}defaults' must be a table of metric = {{ ... }} entries")
    defaults = {
        str(m): _check_entry(v, str(m), f"{prefix}defaults.{m}", source) for m, v in defaults_raw.items()
    }
    sets_raw = data.get("sets", {})
    if not isinstance(sets_raw, Mapping):
        raise ConfigError(f"{source}: key '{prefix}sets' must be a table of [sets.<name>] sections")
    sets: dict[str, dict[str, dict[str, Any] | None]] = {}
    for name, section in sets_raw.items():
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: key '{prefix}sets.{name}' must be a table of metric = {{ ... }} entries")
        sets[str(name)] = {
            str(m): _check_entry(v, str(m), f"{prefix}sets.{name}.{m}", source) for m, v in section.items()
        }
    stress_raw = data.get("stress_sets", [])
    if not isinstance(stress_raw, list) or not all(isinstance(s, str) and s for s in stress_raw):
        raise ConfigError(f"{source}: key '{prefix}stress_sets' must be a list of set names or folder paths")
    stress_sets: list[str] = []
    for i, s in enumerate(stress_raw):
        p = (base / s).expanduser() if not Path(s).expanduser().is_absolute() else Path(s).expanduser()
        if _looks_like_path(s) or p.is_dir():
            if not p.is_dir():
                raise StressSetError(
                    f"{source}: key '{prefix}stress_sets[{i}]': set folder {s!r} does not exist (looked in {p})"
                )
            stress_sets.append(str(p))
        else:
            stress_sets.append(s)
    baseline = data.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise ConfigError(f"{source}: key '{prefix}baseline' must be a file path (string)")
    allow = data.get("allow_missing_baseline", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{source}: key '{prefix}allow_missing_baseline' must be true or false, got {allow!r}")
    th = Thresholds(
        source=source,
        protocol=dict(protocol),
        defaults=defaults,
        sets=sets,
        stress_sets=stress_sets,
        baseline=None if baseline is None else (base / baseline).expanduser(),
        allow_missing_baseline=allow,
        prefix=prefix,
    )
    th.bounds_for("\0defaults-only")
    for name in sets:
        th.bounds_for(name)
    return th


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"thresholds file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"thresholds file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"thresholds file {str(path)!r} is not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"thresholds file {str(path)!r} is not valid TOML: {exc}") from None


def find_thresholds(
    search_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None, *, bundled: bool = True
) -> Path | None:
    """The thresholds file used when none is named: in each search folder (default: the cwd)
    ``colorfid.toml``, else ``pyproject.toml`` if it has ``[tool.colorfid]``; then (with
    ``bundled``) colorfid's own ``golden/colorfid.toml``; None if there is none."""
    if search_dir is None:
        dirs = [Path.cwd()]
    elif isinstance(search_dir, (str, os.PathLike)):
        dirs = [Path(search_dir)]
    else:
        dirs = [Path(d) for d in search_dir]
    for d in dirs:
        if (d / "colorfid.toml").is_file():
            return d / "colorfid.toml"
        pp = d / "pyproject.toml"
        if pp.is_file():
            try:
                data = _read_toml(pp)
            except ConfigError:
                data = {}
            if isinstance(data.get("tool"), Mapping) and "colorfid" in data["tool"]:
                return pp
    if not bundled:
        return None
    try:
        from .stress import golden_dir

        bundled = Path(golden_dir()) / "colorfid.toml"
    except Exception:  # noqa: BLE001 - no golden dir: no bundled file
        return None
    return bundled if bundled.is_file() else None


def load_thresholds(
    path: str | os.PathLike | None = None,
    *,
    search_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> Thresholds:
    """Load a thresholds file (a ``colorfid.toml``-style file, or a ``pyproject.toml`` whose
    ``[tool.colorfid]`` table is used). ``path=None`` searches with :func:`find_thresholds`."""
    if path is None:
        found = find_thresholds(search_dir)
        if found is None:
            raise ConfigError(
                f"no thresholds: no colorfid.toml or [tool.colorfid] in {search_dir or str(Path.cwd())!r} "
                "and no bundled golden/colorfid.toml; pass --config / --colorfid-config"
            )
        p = found
    else:
        p = Path(path).expanduser()
    data = _read_toml(p)
    if p.name == "pyproject.toml":
        tool = data.get("tool")
        if not isinstance(tool, Mapping) or "colorfid" not in tool:
            raise ConfigError(f"{p}: has no [tool.colorfid] table")
        th = parse_thresholds(tool["colorfid"], source=str(p), base_dir=p.parent, prefix="tool.colorfid.")
    else:
        th = parse_thresholds(data, source=str(p), base_dir=p.parent)
    th.path = p
    return th


# --------------------------------------------------------------------------- baselines


#: Protocol keys added after files were first written, with the only value those files can have.
_IMPLIED = {"metric_dtype": "float64"}


def _protocols_differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, _IMPLIED.get(k)), b.get(k, _IMPLIED.get(k))
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            if not math.isclose(float(va), float(vb), rel_tol=1e-9, abs_tol=1e-12):
                out.append((k, va, vb))
        elif va != vb:
            out.append((k, va, vb))
    return out


@dataclasses.dataclass
class Baseline:
    """Per-set aggregates of a reference run, and the protocol each set was measured under.

    ``sets[name] = {"protocol": {...}, "images": int, "metrics": {metric: {stat: float|None, "n": int}}}``.
    """

    sets: dict[str, dict[str, Any]]
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=_utc_now)
    path: Path | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else "<baseline>"

    def value(self, set_name: str, metric: str, stat: str) -> float | None:
        try:
            return self.sets[set_name]["metrics"][metric][stat]
        except (KeyError, TypeError):
            return None

    def check_protocol(self, set_name: str, protocol: Mapping[str, Any]) -> None:
        """BaselineError naming the file and key when ``set_name`` was measured differently."""
        if set_name not in self.sets:
            return
        diffs = _protocols_differ(self.sets[set_name].get("protocol") or {}, protocol)
        if diffs:
            k, vb, vr = diffs[0]
            raise BaselineError(
                f"baseline {self.source}: key 'sets.{set_name}.protocol.{k}' is {vb!r} but this run measures "
                f"{set_name!r} with {k} = {vr!r}; the numbers are not comparable. Re-create the baseline "
                "(--colorfid-update-baseline / colorfid eval --update-baseline) or restore the protocol"
            )

    @classmethod
    def from_results(cls, results: Results | Mapping[str, Any]) -> "Baseline":
        r = results if isinstance(results, Results) else Results.from_dict(results)
        sets = {}
        for name, sd in r.sets.items():
            sets[name] = {
                "protocol": dict(sd.get("protocol") or r.protocol),
                "images": len(sd.get("images") or []),
                "metrics": {m: {s: agg.get(s) for s in (*AGGREGATE_STATS, "n")} for m, agg in sd["aggregate"].items()},
            }
        prov = {k: r.provenance.get(k) for k in ("model", "checkpoint", "checkpoint_sha256", "colorfid_version", "device")}
        return cls(sets=sets, provenance=prov)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": BASELINE_SCHEMA,
            "schema_version": BASELINE_SCHEMA_VERSION,
            "created": self.created,
            "provenance": dict(self.provenance),
            "sets": {k: self.sets[k] for k in sorted(self.sets)},
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<baseline>") -> "Baseline":
        if not isinstance(data, Mapping):
            raise BaselineError(f"baseline {source}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != BASELINE_SCHEMA:
            hint = " (that is a results file; make a baseline with --update-baseline)" if data.get("schema") == "colorfid.results" else ""
            raise BaselineError(
                f"baseline {source}: key 'schema' is {data.get('schema')!r}, expected {BASELINE_SCHEMA!r}{hint}"
            )
        if data.get("schema_version") != BASELINE_SCHEMA_VERSION:
            raise BaselineError(
                f"baseline {source}: key 'schema_version' is {data.get('schema_version')!r}; "
                f"this colorfid reads version {BASELINE_SCHEMA_VERSION}"
            )
        sets = data.get("sets")
        if not isinstance(sets, Mapping):
            raise BaselineError(f"baseline {source}: key 'sets' is missing or not an object")
        clean: dict[str, dict[str, Any]] = {}
        for name, sd in sets.items():
            key = f"sets.{name}"
            if not isinstance(sd, Mapping):
                raise BaselineError(f"baseline {source}: key {key!r} is not an object")
            if not isinstance(sd.get("protocol"), Mapping):
                raise BaselineError(f"baseline {source}: key '{key}.protocol' is missing or not an object")
            ms = sd.get("metrics")
            if not isinstance(ms, Mapping):
                raise BaselineError(f"baseline {source}: key '{key}.metrics' is missing or not an object")
            for m, agg in ms.items():
                if not isinstance(agg, Mapping):
                    raise BaselineError(f"baseline {source}: key '{key}.metrics.{m}' is not an object")
                for st, v in agg.items():
                    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                        raise BaselineError(
                            f"baseline {source}: key '{key}.metrics.{m}.{st}' is not a number: {v!r}"
                        )
            clean[str(name)] = dict(sd)
        prov = data.get("provenance") or {}
        return cls(sets=clean, provenance=dict(prov) if isinstance(prov, Mapping) else {}, created=str(data.get("created", "")))

    def save(self, path: str | os.PathLike) -> Path:
        p = atomic_write_json(path, self.to_dict())
        self.path = p
        return p


def load_baseline(path: str | os.PathLike, *, allow_missing: bool = False) -> Baseline | None:
    """Read a baseline file. Missing: BaselineError, or None when ``allow_missing``.
    Corrupt JSON / other schema / non-number values: BaselineError naming the file and key."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if allow_missing:
            return None
        raise BaselineError(
            f"baseline {str(p)!r} does not exist; create it with --colorfid-update-baseline "
            "(colorfid eval --update-baseline), or allow a missing baseline with "
            "--colorfid-allow-missing-baseline / allow_missing_baseline = true"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {str(p)!r} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {str(p)!r} is not valid JSON (corrupt?): {exc}") from None
    b = Baseline.from_dict(data, source=str(p))
    b.path = p
    return b


def write_baseline(results: Results | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write (or update) a baseline from ``results``: the sets that ran are replaced, every
    other set already in the file is kept. Atomic (temp file + rename). A corrupt existing file
    is a BaselineError (nothing is overwritten)."""
    p = Path(path).expanduser()
    new = Baseline.from_results(results)
    old = load_baseline(p, allow_missing=True) if p.exists() else None
    if old is not None:
        merged = dict(old.sets)
        merged.update(new.sets)
        new.sets = merged
    return new.save(p)


# --------------------------------------------------------------------------- verdicts


@dataclasses.dataclass
class GateRow:
    """One set x metric verdict."""

    set: str
    metric: str
    stat: str
    value: float | None
    bound: str
    baseline: float | None
    delta: float | None
    verdict: str
    note: str = ""
    key: str = ""
    direction: str = ""
    unit: str = ""
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.verdict not in PASSING

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GateReport:
    """All verdicts of one gate run. ``passed`` is True when no row failed."""

    rows: list[GateRow]
    sets: list[str]
    config: str | None = None
    baseline: str | None = None
    regression_checked: bool = True

    @property
    def passed(self) -> bool:
        return not any(r.failed for r in self.rows)

    @property
    def failed_rows(self) -> list[GateRow]:
        return [r for r in self.rows if r.failed]

    def set_passed(self, name: str) -> bool:
        return not any(r.failed for r in self.rows if r.set == name)

    def for_set(self, name: str) -> "GateReport":
        return GateReport([r for r in self.rows if r.set == name], [name], self.config, self.baseline, self.regression_checked)

    @classmethod
    def merge(cls, parts: Sequence["GateReport"]) -> "GateReport":
        rows: list[GateRow] = []
        sets: list[str] = []
        for p in parts:
            rows += p.rows
            sets += [s for s in p.sets if s not in sets]
        first = parts[0] if parts else GateReport([], [])
        return cls(rows, sets, first.config, first.baseline, first.regression_checked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": GATE_SCHEMA,
            "schema_version": 1,
            "passed": self.passed,
            "config": self.config,
            "baseline": self.baseline,
            "regression_checked": self.regression_checked,
            "sets": {s: ("pass" if self.set_passed(s) else "fail") for s in self.sets},
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateReport":
        fields = {f.name for f in dataclasses.fields(GateRow)}
        rows = [GateRow(**{k: v for k, v in r.items() if k in fields}) for r in d.get("rows", [])]
        return cls(rows, list(d.get("sets", {})), d.get("config"), d.get("baseline"), bool(d.get("regression_checked", True)))

    def format(self, results: Results | None = None, *, set_name: str | None = None, worst: bool = True) -> str:
        return format_report(self, results, set_name=set_name, worst=worst)


def _nonfinite_images(sd: Mapping[str, Any]) -> list[str]:
    return [
        im["name"] for im in sd.get("images") or [] if (im.get("metrics") or {}).get("nonfinite_count") not in (None, 0, 0.0)
    ]


def judge(
    results: Results | Mapping[str, Any],
    thresholds: Thresholds,
    baseline: Baseline | None = None,
    *,
    check_regression: bool = True,
    sets: Sequence[str] | None = None,
    known_sets: Iterable[str] | None = None,
) -> GateReport:
    """Verdicts for every (set, metric) entry of ``thresholds`` that applies to the sets in
    ``results`` (or only ``sets``). See the module docstring for the rules.

    ``known_sets`` are set names a ``[sets.<name>]`` section may name without being run
    (default: the bundled sets and the file's ``stress_sets``); any other name is an
    UnknownNameError naming the file and key.

    Raises:
        UsageError subclasses: unknown set section, no sets, a set with no images or with no
        applicable check, an undefined (NaN) aggregate where a bound applies (empty mask),
        results missing a metric, a baseline measured under another protocol.
    """
    res = results if isinstance(results, Results) else Results.from_dict(results)
    names = list(sets) if sets is not None else list(res.sets)
    if not names:
        raise UsageError("the results hold no stress sets: nothing was gated")
    missing_sets = [n for n in names if n not in res.sets]
    if missing_sets:
        raise UnknownNameError(f"set(s) {missing_sets} are not in the results; results have {sorted(res.sets)}")
    if known_sets is None:
        known = set(_bundled_names()) | set(thresholds.stress_set_names())
    else:
        known = set(known_sets)
    known |= set(res.sets)
    for name in thresholds.sets:
        if name not in known:
            raise UnknownNameError(
                f"{thresholds.source}: key '{thresholds.prefix}sets.{name}': unknown stress set {name!r}"
                f"{_unknown(name, sorted(known))}; known sets: {', '.join(sorted(known))} "
                "(a custom set folder must be listed in stress_sets or be among the sets run)"
            )
    rows: list[GateRow] = []
    for name in names:
        sd = res.sets[name]
        n_images = len(sd.get("images") or [])
        if n_images == 0:
            raise StressSetError(f"set {name!r} has zero images in the results: nothing to gate (a vacuous pass is not a pass)")
        if baseline is not None:
            baseline.check_protocol(name, sd.get("protocol") or res.protocol)
        bounds = thresholds.bounds_for(name)
        applied = 0
        for metric, b in bounds.items():
            spec = _metrics.get_metric(metric)
            agg = (sd.get("aggregate") or {}).get(metric)
            if agg is None:
                raise UsageError(
                    f"{thresholds.source}: key {b.key!r}: the results of set {name!r} have no metric {metric!r} "
                    f"(they have {', '.join(sorted(sd.get('aggregate') or {}))})"
                )
            value = agg.get(b.stat)
            base_v = baseline.value(name, metric, b.stat) if baseline is not None else None
            delta = None if value is None or base_v is None else value - base_v
            row = GateRow(
                set=name, metric=metric, stat=b.stat, value=value, bound=b.text(), baseline=base_v, delta=delta,
                verdict="pass", key=b.key, direction=spec.direction, unit=spec.unit, limits=b.to_dict(),
            )
            if value is None:
                bad = _nonfinite_images(sd)
                if bad:
                    row.verdict = "fail_bound"
                    row.note = f"undefined: the output has non-finite values ({', '.join(bad[:5])})"
                    rows.append(row)
                    applied += 1
                    continue
                raise UsageError(
                    f"{thresholds.source}: key {b.key!r}: {metric} is undefined (NaN: empty mask) on all "
                    f"{n_images} images of set {name!r}, so this bound cannot be checked; switch it off for "
                    f"the set with `{metric} = false` under [{thresholds.prefix}sets.{name}] or change the protocol"
                )
            if b.has_limits:
                applied += 1
                if not b.within(value):
                    row.verdict = "fail_bound"
                    rows.append(row)
                    continue
            if baseline is None:
                row.verdict = "pass" if b.has_limits else "new"
            elif base_v is None:
                row.verdict = "new"
                row.note = "no baseline value"
            else:
                applied += 1 if check_regression else 0
                change = badness(metric, value) - badness(metric, base_v)
                slack = b.slack(base_v)
                if check_regression and change > slack:
                    row.verdict = "fail_regression"
                    row.note = f"worse than baseline by {_fmt(change)} > slack {_fmt(slack)}"
                elif change < -slack:
                    row.verdict = "improved"
                else:
                    row.verdict = "pass"
            rows.append(row)
        if applied == 0:
            where = f"[{thresholds.prefix}defaults] / [{thresholds.prefix}sets.{name}]"
            raise ConfigError(
                f"{thresholds.source}: no bound applies to set {name!r} ({where} give it no max/min/target, "
                "and there is no baseline value to regress against): the gate would pass vacuously"
            )
    return GateReport(
        rows=rows,
        sets=names,
        config=thresholds.source,
        baseline=None if baseline is None else baseline.source,
        regression_checked=check_regression,
    )


def _bundled_names() -> list[str]:
    try:
        from .stress import bundled_set_names

        return list(bundled_set_names())
    except (ImportError, ColorfidError):
        return []


# --------------------------------------------------------------------------- text


def format_report(
    report: GateReport,
    results: Results | Mapping[str, Any] | None = None,
    *,
    set_name: str | None = None,
    worst: bool = True,
) -> str:
    """Plain-text tables: one per set (metric, stat, value, bound, baseline, Δ, verdict), then
    for failing metrics the worst images (value and output file) when ``results`` is given."""
    res = None
    if results is not None:
        res = results if isinstance(results, Results) else Results.from_dict(results)
    names = [set_name] if set_name is not None else report.sets
    lines: list[str] = []
    head = ("metric", "stat", "value", "bound", "baseline", "Δ", "verdict")
    for name in names:
        rows = [r for r in report.rows if r.set == name]
        ok = not any(r.failed for r in rows)
        n = len(res.sets[name]["images"]) if res is not None and name in res.sets else None
        lines.append(
            f"colorfid gate: set {name!r} {'PASSED' if ok else 'FAILED'}"
            + (f" ({n} images)" if n is not None else "")
        )
        table = [head] + [
            (
                r.metric,
                r.stat,
                _fmt(r.value),
                r.bound or "-",
                _fmt(r.baseline),
                "-" if r.delta is None else (("+" if r.delta > 0 else "") + _fmt(r.delta)),
                r.verdict.upper() if r.failed else r.verdict,
            )
            for r in rows
        ]
        widths = [max(len(str(t[i])) for t in table) for i in range(len(head))]
        for j, t in enumerate(table):
            line = "  " + "  ".join(str(c).ljust(widths[i]) if i in (0, 1, 3, 6) else str(c).rjust(widths[i]) for i, c in enumerate(t))
            lines.append(line.rstrip())
            if j == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        notes = [f"  note: {r.metric}: {r.note}" for r in rows if r.note and r.failed]
        lines += notes
        if worst and res is not None and name in res.sets:
            lines += _worst_table(res, name, [r.metric for r in rows if r.failed])
        lines.append("")
    foot = []
    if report.config:
        foot.append(f"config {report.config}")
    foot.append(f"baseline {report.baseline or '-'}" + ("" if report.regression_checked else " (updating: regression not checked)"))
    lines.append("  " + "; ".join(foot))
    return "\n".join(lines)


def _worst_table(res: Results, name: str, failing: list[str], max_cols: int = 4) -> list[str]:
    """The worst images of the failing metrics: worst_k per metric, one row per image."""
    if not failing:
        return []
    sd = res.sets[name]
    images = sd.get("images") or []
    k = int((sd.get("protocol") or res.protocol or {}).get("worst_k", 3) or 3)
    cols = failing[:max_cols]
    chosen: list[dict] = []
    for metric in cols:
        scored = [
            (badness(metric, im["metrics"][metric]), im)
            for im in images
            if (im.get("metrics") or {}).get(metric) is not None
        ]
        scored.sort(key=lambda t: -t[0])
        for _, im in scored[:k]:
            if all(im is not c for c in chosen):
                chosen.append(im)
    chosen = chosen[: 2 * k]
    if not chosen:
        return []
    head = ["image", *cols, "output"]
    table = [head] + [
        [str(im["name"]), *[_fmt((im.get("metrics") or {}).get(c)) for c in cols],
         str(im.get("output") or im.get("lq") or im.get("gt") or "-")]
        for im in chosen
    ]
    widths = [max(len(t[i]) for t in table) for i in range(len(head) - 1)]
    out = [f"  worst images (worst {k} per failing metric"
           + (f"; columns: first {max_cols} of {len(failing)} failing metrics" if len(failing) > max_cols else "") + "):"]
    for t in table:
        cells = [t[0].ljust(widths[0])] + [c.rjust(widths[i + 1]) for i, c in enumerate(t[1:-1])] + [t[-1]]
        out.append("    " + "  ".join(cells))
    return out


# --------------------------------------------------------------------------- plan (CLI + pytest)


@dataclasses.dataclass
class GatePlan:
    """Everything a gate run needs, validated up front (see :func:`plan_gate`)."""

    thresholds: Thresholds
    sets: list[Any]
    source: ModelSource
    baseline: Baseline | None
    baseline_path: Path | None
    update_baseline: bool
    eval_kwargs: dict[str, Any]

    @property
    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]

    def known_sets(self) -> set[str]:
        return set(_bundled_names()) | set(self.thresholds.stress_set_names()) | set(self.set_names)

    def get_set(self, name: str) -> Any:
        for s in self.sets:
            if s.name == name:
                return s
        raise UnknownNameError(f"set {name!r} is not in this gate run; sets: {self.set_names}")

    def evaluate(self, names: Sequence[str] | None = None, *, progress: bool | None = None) -> Results:
        from .evaluate import evaluate

        chosen = self.sets if names is None else [self.get_set(n) for n in names]
        kw = dict(self.eval_kwargs)
        if progress is not None:
            kw["progress"] = progress
        return evaluate(self.source, chosen, protocol=self.thresholds.protocol, **kw)

    def judge(self, results: Results) -> GateReport:
        return judge(
            results, self.thresholds, self.baseline,
            check_regression=not self.update_baseline, known_sets=self.known_sets(),
        )

    def write_baseline(self, results: Results) -> Path | None:
        if not self.update_baseline or self.baseline_path is None:
            return None
        return write_baseline(results, self.baseline_path)


def plan_gate(
    model: Any = None,
    *,
    predictions: str | os.PathLike | None = None,
    sets: Sequence[str | os.PathLike] | None = None,
    config: str | os.PathLike | Thresholds | None = None,
    search_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    baseline: str | os.PathLike | None = None,
    update_baseline: bool = False,
    allow_missing_baseline: bool | None = None,
    device: str | None = None,
    tile: int | None = None,
    overlap: int = 32,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
) -> GatePlan:
    """Validate a whole gate run before any image is processed: thresholds, sets, model,
    baseline (and its protocol). Every problem is a UsageError naming the file and key, or a
    CheckpointError for an unloadable checkpoint.

    ``model``: a checkpoint path, an nn.Module, or ``"identity"``; ``predictions``: a folder of
    saved outputs instead (see :func:`colorfid.evaluate.prediction_sets`). ``sets``: names or
    folders (default: the file's ``stress_sets``, else all bundled sets).
    """
    from .evaluate import _resolve_sets, prediction_sets, resolve_model

    if (model is None) == (predictions is None):
        raise UsageError("give exactly one of a checkpoint/model or a predictions folder")
    th = config if isinstance(config, Thresholds) else load_thresholds(config, search_dir=search_dir)
    if sets is not None:
        flat: list[Any] = []
        for s in sets:
            if isinstance(s, str) and "," in s:
                flat += [x.strip() for x in s.split(",") if x.strip()]
            else:
                flat.append(s)
        sets = flat
    if predictions is not None:
        stress_sets = prediction_sets(predictions, [str(s) for s in sets] if sets else None)
        source = resolve_model(None)
    else:
        specs = sets if sets else (th.stress_sets or None)
        stress_sets = _resolve_sets(specs)
        source = resolve_model(model, device=device)
        for s in stress_sets:
            if s.kind != "lq" or any(p.lq is None for p in s.pairs):
                raise StressSetError(f"stress set {s.name!r} ({s.root}) has no lq/ images to run the model on")
    if not stress_sets:
        raise StressSetError("no stress sets to run")
    for s in stress_sets:
        if not list(s.pairs):
            raise StressSetError(f"stress set {s.name!r} ({s.root}) has no images")
    bpath: Path | None = Path(baseline).expanduser() if baseline is not None else th.baseline
    if update_baseline and bpath is None:
        raise UsageError("--update-baseline needs a baseline path (--baseline / --colorfid-baseline or baseline = ... in the thresholds file)")
    allow = th.allow_missing_baseline if allow_missing_baseline is None else bool(allow_missing_baseline)
    base = None
    if bpath is not None:
        if update_baseline and bpath.exists():
            base = load_baseline(bpath)
        elif not update_baseline:
            base = load_baseline(bpath, allow_missing=allow)
    plan = GatePlan(
        thresholds=th, sets=stress_sets, source=source, baseline=base, baseline_path=bpath,
        update_baseline=update_baseline,
        eval_kwargs={"device": device, "tile": tile, "overlap": overlap, "cache_dir": cache_dir,
                     "use_cache": use_cache, "progress": progress},
    )
    known = plan.known_sets()
    for name in th.sets:
        if name not in known:
            raise UnknownNameError(
                f"{th.source}: key '{th.prefix}sets.{name}': unknown stress set {name!r}{_unknown(name, sorted(known))}; "
                f"known sets: {', '.join(sorted(known))} (a custom set folder must be listed in stress_sets or be among the sets run)"
            )
    base_proto = th.metric_protocol()
    for s in stress_sets:
        bounds = th.bounds_for(s.name)
        proto = protocol_dict(
            effective_protocol(base_proto, getattr(s, "protocol_overrides", None) or None, source=f"{s.root}/set.toml [protocol]")
        )
        if base is not None and not update_baseline:
            base.check_protocol(s.name, proto)
        limited = any(b.has_limits for b in bounds.values())
        regress = base is not None and not update_baseline and s.name in base.sets and bool(bounds)
        if not limited and not regress:
            raise ConfigError(
                f"{th.source}: no bound applies to set {s.name!r} ([{th.prefix}defaults] / [{th.prefix}sets.{s.name}] "
                "give it no max/min/target, and there is no baseline to regress against): the gate would pass vacuously"
            )
    return plan


# --------------------------------------------------------------------------- CLI
