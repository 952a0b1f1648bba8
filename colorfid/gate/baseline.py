"""Baselines: small JSON files (``"schema": "colorfid.baseline"``) of per-set aggregates and the
protocol each set was measured under.

Writing (:func:`write_baseline`) is one read-merge-write under an exclusive lock
(``.<name>.lock`` beside the file; :mod:`colorfid._lock`) ending in an atomic rename: concurrent
writers of one baseline each keep their sets, a writer killed at any point leaves the previous
file or the new one. The file's mode is kept, a symbolic link is written through, and a
read-only baseline is refused, never replaced."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .._atomic import remove_stale_temporaries, write_target
from .._files import atomic_write_json, load_json, os_reason, output_problem, utc_now
from .._lock import file_lock, lock_path_for
from ..errors import BaselineError, OutputError
from ..results import AGGREGATE_STATS, RESULTS_SCHEMA, Results, canonical_stat

__all__ = ["BASELINE_SCHEMA", "BASELINE_SCHEMA_VERSION", "Baseline", "load_baseline", "write_baseline",
           "check_baseline_writable"]

BASELINE_SCHEMA = "colorfid.baseline"


BASELINE_SCHEMA_VERSION = 1


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
    created: str = dataclasses.field(default_factory=utc_now)
    path: Path | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else "<baseline>"

    def value(self, set_name: str, metric: str, stat: str) -> float | None:
        try:
            return self.sets[set_name]["metrics"][metric][stat]
        except (KeyError, TypeError):
            return None

    def require(self, set_name: str, metric: str, stat: str) -> None:
        """BaselineError naming the key when the baseline holds ``set_name`` but no ``stat`` of
        ``metric`` for it: a regression check against it would pass as "new" without checking."""
        if set_name not in self.sets:
            return
        metrics = self.sets[set_name].get("metrics") or {}
        key = f"sets.{set_name}.metrics.{metric}"
        if metric not in metrics:
            raise BaselineError(
                f"baseline {self.source}: key {key!r} is missing, but this run checks {metric} ({stat}) of set "
                f"{set_name!r} against the baseline; re-create the baseline (--colorfid-update-baseline / colorfid "
                "eval --update-baseline) or remove the set from it"
            )
        if stat not in (metrics[metric] or {}):
            raise BaselineError(
                f"baseline {self.source}: key '{key}.{stat}' is missing, but this run checks the {stat} of {metric} "
                f"on set {set_name!r} against the baseline; re-create the baseline"
            )

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
    def from_dict(cls, data: Any, *, source: str = "<baseline>", allow_empty: bool = False) -> "Baseline":
        """Validate a baseline's JSON data; BaselineError naming ``source`` and the key. No sets,
        or a set with no metrics, is refused (a regression check against it would check nothing)
        unless ``allow_empty`` (:func:`write_baseline` fills such a file)."""
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
        if not sets and not allow_empty:
            raise BaselineError(f"baseline {source}: key 'sets' holds no sets: nothing to regress against")
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
            ms = {m: {canonical_stat(str(st)): v for st, v in agg.items()} if isinstance(agg, Mapping) else agg
                  for m, agg in ms.items()}  # stat names of older files (p95 -> tail95)
            if not ms and not allow_empty:
                raise BaselineError(f"baseline {source}: key '{key}.metrics' is empty: set {name!r} has no values to "
                                    "regress against")
            for m, agg in ms.items():
                if not isinstance(agg, Mapping):
                    raise BaselineError(f"baseline {source}: key '{key}.metrics.{m}' is not an object")
                for st, v in agg.items():
                    if v is not None and not _finite_number(v):
                        raise BaselineError(
                            f"baseline {source}: key '{key}.metrics.{m}.{st}' is not a number: {v!r}"
                        )
            clean[str(name)] = dict(sd, metrics=ms)
        prov = data.get("provenance") or {}
        return cls(sets=clean, provenance=dict(prov) if isinstance(prov, Mapping) else {}, created=str(data.get("created", "")))

    def save(self, path: str | os.PathLike) -> Path:
        """Write this baseline to ``path`` as it is (atomic; no merge, no lock: see
        :func:`write_baseline` for updating a shared file)."""
        p = atomic_write_json(path, self.to_dict(), what="baseline")
        self.path = p
        return p


def _finite_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer beyond float range
        return False


def load_baseline(path: str | os.PathLike, *, allow_missing: bool = False, allow_empty: bool = False) -> Baseline | None:
    """Read a baseline file: a gate baseline (``colorfid.baseline``) or a results file
    (``colorfid.results``, e.g. ``colorfid eval --json``; its per-set aggregates are the baseline,
    as :meth:`Baseline.from_results` makes them). Missing: BaselineError, or None when
    ``allow_missing``. Corrupt JSON / other schema / non-number values / no sets / a set without
    metrics (unless ``allow_empty``): BaselineError naming the file and key."""
    p = Path(path).expanduser()
    if allow_missing and not p.exists():
        return None
    data = load_json(p, BaselineError, "baseline", missing=(
        f"baseline {str(p)!r} does not exist; create it with --colorfid-update-baseline "
        "(colorfid eval --update-baseline), or allow a missing baseline with "
        "--colorfid-allow-missing-baseline / allow_missing_baseline = true"
    ))
    if isinstance(data, Mapping) and data.get("schema") == RESULTS_SCHEMA:
        from ..errors import ConfigError  # noqa: PLC0415

        try:
            b = Baseline.from_results(Results.from_dict(data, source=str(p)))
        except ConfigError as exc:
            raise BaselineError(f"baseline {exc}") from None
        b.created = str(data.get("created", b.created))
    else:
        b = Baseline.from_dict(data, source=str(p), allow_empty=allow_empty)
    b.path = p
    return b


def check_baseline_writable(path: str | os.PathLike) -> Path:
    """Where :func:`write_baseline` would write ``path`` (a link's target), or a usage error now:
    BaselineError for a read-only file or a folder in its place, OutputError when its folder
    cannot be written. Run before an evaluation so it does not end in an unwritable baseline."""
    p = Path(path).expanduser()
    try:
        target, _mode = write_target(p)
    except PermissionError:
        raise BaselineError(
            f"baseline {str(p)!r} is read-only; colorfid does not replace a read-only baseline. Make it "
            "writable (chmod u+w) to update it, or write the new baseline to another file"
        ) from None
    except IsADirectoryError:
        raise BaselineError(f"baseline {str(p)!r} is a folder, not a file") from None
    why = output_problem(target.parent, folder=True)
    if why is not None:
        raise OutputError(f"baseline {str(p)!r} cannot be written: {why}")
    return target


def write_baseline(results: Results | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write (or update) a baseline from ``results``: the sets that ran are replaced, every
    other set already in the file is kept.

    Under an exclusive lock on ``.<name>.lock`` beside the file, the current file is read (a
    corrupt one is a BaselineError; nothing is overwritten), merged and written atomically, so
    concurrent writers never lose each other's sets and a killed writer leaves the old file or
    the new one (its temporary file is removed by the next writer). See
    :func:`check_baseline_writable` for the files it refuses."""
    p = Path(path).expanduser()
    new = Baseline.from_results(results)
    target = check_baseline_writable(p)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(lock_path_for(target)):
            remove_stale_temporaries(target)
            old = load_baseline(target, allow_missing=True, allow_empty=True)
            if old is not None:
                merged = dict(old.sets)
                merged.update(new.sets)
                new.sets = merged
            new.save(target)
    except (TimeoutError, OSError) as exc:
        raise OutputError(f"baseline {str(p)!r} cannot be written: {os_reason(exc)}"
                          + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")) from None
    new.path = p
    return p
