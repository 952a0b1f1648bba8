"""Thresholds files: ``colorfid.toml`` or ``[tool.colorfid]`` -> :class:`Thresholds` of
:class:`Bound` s, every entry validated before any run (see :mod:`colorfid.gate` for the format)."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._files import read_text
from .._format import did_you_mean, sig
from ..errors import ConfigError, StressSetError, UnknownNameError
from ..metrics import get_metric
from ..results import AGGREGATE_STATS, RECORDED_KEYS, STAT_ALIASES, canonical_stat, effective_protocol

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TOP_KEYS", "BOUND_KEYS", "NOISE_REL", "CANDIDATES", "ROOT_MARKERS", "Bound", "Thresholds",
           "parse_thresholds", "find_thresholds", "load_thresholds", "looks_like_path"]

TOP_KEYS = ("stress_sets", "baseline", "allow_missing_baseline", "protocol", "defaults", "sets")


BOUND_KEYS = ("min", "max", "target", "band", "worse_abs", "worse_rel", "stat")


_LIMIT_KEYS = ("min", "max", "target", "band")


_NUMBER_KEYS = ("min", "max", "target", "band", "worse_abs", "worse_rel")


#: Relative float noise a regression check tolerates when no slack is given.
NOISE_REL = 1e-9


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
            return f"{sig(self.target)} ± {sig(self.band)}"
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"[{sig(lo)}, {sig(hi)}]"
        if hi is not None:
            return f"≤ {sig(hi)}"
        if lo is not None:
            return f"≥ {sig(lo)}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _check_entry(raw: Any, metric: str, key: str, source: str) -> dict[str, Any] | None:
    """Validate one raw ``metric = {...}`` entry (types, names). Returns the dict, or None = off."""
    try:
        get_metric(metric)
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
                f"{source}: key '{key}.{k}': unknown bound key{did_you_mean(k, BOUND_KEYS)}; known: {', '.join(BOUND_KEYS)}"
            )
        if k == "stat":
            if v not in AGGREGATE_STATS and v not in STAT_ALIASES:
                raise ConfigError(
                    f"{source}: key '{key}.stat': {v!r} is not one of {', '.join(AGGREGATE_STATS)}"
                    f" (older name: {', '.join(f'{a} = {b}' for a, b in STAT_ALIASES.items())})"
                )
            entry[k] = canonical_stat(v)  # "p95" (the name before tail95) means tail95
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{source}: key '{key}.{k}': expected a number, got {v!r}")
        try:
            finite = math.isfinite(float(v))
        except OverflowError:  # an integer beyond float range
            raise ConfigError(
                f"{source}: key '{key}.{k}': expected a finite number, got an integer of {len(str(abs(v)))} digits"
            ) from None
        if not finite:
            raise ConfigError(f"{source}: key '{key}.{k}': expected a finite number, got {v!r}")
        if k in ("band", "worse_abs", "worse_rel") and v < 0:
            raise ConfigError(f"{source}: key '{key}.{k}': must be >= 0, got {v!r}")
        entry[k] = float(v)
    if not entry:
        raise ConfigError(f"{source}: key {key!r}: empty table checks nothing; give max/min/target+band or write false")
    return entry


def _make_bound(metric: str, entry: Mapping[str, Any], key: str, source: str) -> Bound:
    spec = get_metric(metric)
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
        raise ConfigError(f"{source}: key {key!r}: min ({sig(b.min)}) is above max ({sig(b.max)})")
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
        return [Path(s).name if looks_like_path(s) else s for s in self.stress_sets]

    def resolve_set_names(self, specs: Sequence[Any]) -> list[Any]:
        """``specs`` (``--sets``: names or folders) with every name this file declares -- the
        folder name of a ``stress_sets`` path -- replaced by that folder, so ``--sets my_photos``
        runs ``stress_sets = ["./data/my_photos"]`` (and its ``[sets.my_photos]`` bounds) in eval,
        pytest, report and training alike. Other entries (bundled names, folders) are unchanged."""
        declared = {Path(s).name: s for s in self.stress_sets if Path(s).is_absolute()}
        return [declared.get(s, s) if isinstance(s, str) and not looks_like_path(s) else s for s in specs]

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


def looks_like_path(s: str) -> bool:
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
                f"{source}: key '{prefix}{k}': unknown key{did_you_mean(k, TOP_KEYS)}; known: {', '.join(TOP_KEYS)}"
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
    if "stress_sets" in data and not stress_raw:
        raise ConfigError(f"{source}: key '{prefix}stress_sets' is an empty list: name the sets to run, or leave the "
                          "key out to run every bundled set")
    stress_sets: list[str] = []
    for i, s in enumerate(stress_raw):
        p = (base / s).expanduser() if not Path(s).expanduser().is_absolute() else Path(s).expanduser()
        if looks_like_path(s) or p.is_dir():
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


def _read_toml(path: Path, what: str = "thresholds file") -> dict[str, Any]:
    text = read_text(path, ConfigError, what, missing=f"{what} {str(path)!r} does not exist")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None


#: The files that hold thresholds, in the order they are looked for in a folder.
CANDIDATES = ("colorfid.toml", "pyproject.toml")

#: What marks a project's root folder: the upward search stops there.
ROOT_MARKERS = ("pyproject.toml", ".git")


def _folders(start: Path) -> list[Path]:
    """``start`` and its parents up to the nearest project root (a folder holding
    ``pyproject.toml`` or ``.git``), inclusive; just ``start`` when no project root lies above."""
    chain = [start, *start.parents]
    for i, d in enumerate(chain):
        if any(os.path.lexists(d / m) for m in ROOT_MARKERS):
            return chain[: i + 1]
    return [start]


def _norm(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum())


def _candidate(folder: Path) -> Path | None:
    """The thresholds file ``folder`` holds, or None. A candidate that exists but cannot be used
    (a folder, a broken link, unreadable, not TOML, a misspelt ``[tool.colorfid]``) is a
    ConfigError: skipping it would let other thresholds judge silently."""
    for name in CANDIDATES:
        p = folder / name
        if not os.path.lexists(p):
            continue
        if not p.is_file():
            kind = "a broken link" if p.is_symlink() else "a folder"
            raise ConfigError(f"thresholds file {str(p)!r} is not a file ({kind}): colorfid would otherwise judge with "
                              "other thresholds; fix or remove it, or name the thresholds with --config / --colorfid-config")
        if name == "colorfid.toml":
            return p
        data = _read_toml(p, "pyproject.toml")
        tool = data.get("tool")
        if not isinstance(tool, Mapping):
            continue
        if "colorfid" in tool:
            return p
        near = [str(k) for k in tool if _norm(str(k)) == "colorfid"]
        if near:
            raise ConfigError(f"{p}: table [tool.{near[0]}] is not [tool.colorfid] (table names are case- and "
                              "spelling-sensitive): rename it, or colorfid judges with other thresholds")
    return None


def find_thresholds(
    search_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None, *, bundled: bool = True
) -> Path | None:
    """The thresholds file used when none is named (the one discovery rule of the CLI, the
    plugin and the report).

    From each search folder (default: the cwd) upward to its project root (the nearest folder
    holding ``pyproject.toml`` or ``.git``; only the folder itself when there is none), the first
    folder holding ``colorfid.toml``, or a ``pyproject.toml`` with ``[tool.colorfid]``, decides;
    then (with ``bundled``) colorfid's own ``golden/colorfid.toml``; None if there is none.

    Raises:
        ConfigError: a candidate on the way cannot be used (see :func:`_candidate`): an invalid
            ``pyproject.toml`` is an error, never a reason to fall back to the bundled file.
    """
    if search_dir is None:
        starts = [Path.cwd()]
    elif isinstance(search_dir, (str, os.PathLike)):
        starts = [Path(search_dir)]
    else:
        starts = [Path(d) for d in search_dir]
    seen: set[Path] = set()
    for start in starts:
        for d in _folders(Path(os.path.abspath(start))):
            if d in seen:
                continue
            seen.add(d)
            found = _candidate(d)
            if found is not None:
                return found
    if not bundled:
        return None
    try:
        from ..stress import golden_dir

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
