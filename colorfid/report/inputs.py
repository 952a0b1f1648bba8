"""The report's inputs: results (objects, dicts or files), a baseline, a gate verdict."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._files import load_json
from .._format import finite
from ..errors import ConfigError, UsageError

__all__ = ["Run", "results_dict", "step_of", "label_of", "as_run", "as_base", "gate_dict", "resolve_path", "agg_stat",
           "agg_value"]

_STEP_RE = re.compile(r"(\d+)(?!.*\d)")


@dataclass
class Run:
    """One evaluated checkpoint: the results dict and where it came from."""

    data: dict[str, Any]
    source: Path | None = None
    label: str = ""
    step: int | None = None
    gate: dict[str, Any] | None = None

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.data.get("provenance") or {})

    @property
    def sha(self) -> str | None:
        return self.provenance.get("checkpoint_sha256")


def results_dict(obj: Any, what: str = "results") -> tuple[dict[str, Any], Path | None]:
    """A Results object, a schema-v1 dict or a path to a results JSON -> (dict, source path).

    Validated with :meth:`colorfid.evaluation.Results.from_dict` (ConfigError naming the key).
    """
    from ..results import Results  # noqa: PLC0415

    source: Path | None = None
    if isinstance(obj, (str, os.PathLike)):
        source = Path(obj)
        return Results.load(source).to_dict(), source
    if isinstance(obj, Results):
        return obj.to_dict(), None
    if isinstance(obj, Mapping):
        return Results.from_dict(obj, source=what).to_dict(), None
    if hasattr(obj, "to_dict"):
        return Results.from_dict(obj.to_dict(), source=what).to_dict(), None
    raise UsageError(
        f"{what} must be a Results, a results dict or a path to a results JSON, not {type(obj).__name__}"
    )


def step_of(checkpoint: str | None) -> int | None:
    """Training step from a checkpoint name: the last integer of its stem (net_g_20000.pth -> 20000)."""
    if not checkpoint:
        return None
    m = _STEP_RE.search(Path(str(checkpoint)).stem)
    return int(m.group(1)) if m else None


def label_of(prov: Mapping[str, Any], fallback: str) -> str:
    ckpt = prov.get("checkpoint")
    if ckpt:
        return Path(str(ckpt)).stem
    return str(prov.get("model") or fallback)


def as_run(obj: Any, index: int, what: str = "results") -> Run:
    data, source = results_dict(obj, what)
    prov = data.get("provenance") or {}
    return Run(data, source, label_of(prov, f"run {index + 1}"), step_of(prov.get("checkpoint")))


def as_base(obj: Any) -> Run:
    """The baseline: Results (object, dict or path; values and cached outputs) or a gate
    baseline (``colorfid.gate.Baseline``, its dict or its JSON file; values only)."""
    data: Any = obj
    source: Path | None = None
    if isinstance(obj, (str, os.PathLike)):
        source = Path(obj)
        data = load_json(source, ConfigError, "baseline file")
    elif hasattr(obj, "to_dict") and hasattr(obj, "value"):  # colorfid.gate.Baseline
        data = obj.to_dict()
        source = getattr(obj, "path", None)
    if isinstance(data, Mapping) and data.get("schema") == "colorfid.baseline":
        from ..gate import Baseline  # noqa: PLC0415

        b = Baseline.from_dict(data, source=str(source or "<baseline>"))
        prov = dict(b.provenance)
        sets = {name: {"aggregate": dict(sd.get("metrics") or {}), "images": []} for name, sd in b.sets.items()}
        pseudo = {"created": b.created, "provenance": prov, "protocol": {}, "sets": sets}
        return Run(pseudo, source, label_of(prov, source.stem if source else "baseline"), step_of(prov.get("checkpoint")))
    run = as_run(data, 0, "baseline")
    run.source = source or run.source
    return run


def gate_dict(gate_report: Any) -> dict[str, Any] | None:
    """GateReport / its to_dict() / a list of rows -> {"passed": bool, "rows": [...]}."""
    if gate_report is None:
        return None
    d: Any = gate_report.to_dict() if hasattr(gate_report, "to_dict") else gate_report
    if isinstance(d, Mapping):
        rows = d.get("rows")
        passed = d.get("passed")
    elif isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
        rows, passed = d, None
    else:
        raise UsageError(f"gate_report must be a GateReport, its to_dict() or a list of rows, not {type(d).__name__}")
    if not isinstance(rows, Sequence):
        raise ConfigError("gate report: key 'rows' is missing or not a list")
    clean = []
    for i, r in enumerate(rows):
        r = r.to_dict() if hasattr(r, "to_dict") else dict(r)
        missing = [k for k in ("set", "metric", "verdict") if k not in r]
        if missing:
            raise ConfigError(f"gate report row {i}: missing key(s) {missing}; has {sorted(r)}")
        clean.append(r)
    if passed is None:
        passed = not any(str(r["verdict"]).startswith("fail") for r in clean)
    out = dict(d) if isinstance(d, Mapping) else {}
    out.update(passed=bool(passed), rows=clean)
    return out


def resolve_path(p: Any, run: Run | None) -> Path | None:
    if not p:
        return None
    path = Path(str(p))
    if not path.is_absolute() and run is not None and run.source is not None:
        cand = run.source.parent / path
        if cand.exists():
            return cand
    return path


def agg_value(a: Any, stat: str) -> float | None:
    """The ``stat`` of one metric's aggregates (a dict of stats, or a bare number); the older
    stat names of history lines and baselines (``p95``) read as their current ones."""
    if not isinstance(a, Mapping):
        return finite(a)
    from ..results import canonical_stat  # noqa: PLC0415

    want = canonical_stat(stat)
    for k, v in a.items():
        if canonical_stat(str(k)) == want:
            return finite(v)
    return None


def agg_stat(data: Mapping[str, Any], set_name: str, metric: str, stat: str) -> float | None:
    s = (data.get("sets") or {}).get(set_name) or {}
    a = (s.get("aggregate") or {}).get(metric) or {}
    return agg_value(a, stat)
