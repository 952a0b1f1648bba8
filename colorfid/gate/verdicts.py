"""Verdicts: :func:`judge` turns results, thresholds and a baseline into :class:`GateRow` s."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from .._format import did_you_mean, sig
from ..errors import ColorfidError, ConfigError, StressSetError, UnknownNameError, UsageError
from ..metrics import badness, get_metric
from ..results import Results, aggregate_label
from .baseline import Baseline
from .thresholds import Thresholds

__all__ = ["VERDICTS", "PASSING", "GATE_SCHEMA", "GateRow", "GateReport", "judge", "bundled_names"]

VERDICTS = ("pass", "fail_bound", "fail_regression", "improved", "new")


PASSING = ("pass", "improved", "new")


GATE_SCHEMA = "colorfid.gate"


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
    #: which statistic of which per-image metric ``value`` is, in words (results.aggregate_label)
    label: str = ""

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
        from .text import format_report

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
        known = set(bundled_names()) | set(thresholds.stress_set_names())
    else:
        known = set(known_sets)
    known |= set(res.sets)
    for name in thresholds.sets:
        if name not in known:
            raise UnknownNameError(
                f"{thresholds.source}: key '{thresholds.prefix}sets.{name}': unknown stress set {name!r}"
                f"{did_you_mean(name, sorted(known))}; known sets: {', '.join(sorted(known))} "
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
            spec = get_metric(metric)
            agg = (sd.get("aggregate") or {}).get(metric)
            if agg is None:
                raise UsageError(
                    f"{thresholds.source}: key {b.key!r}: the results of set {name!r} have no metric {metric!r} "
                    f"(they have {', '.join(sorted(sd.get('aggregate') or {}))})"
                )
            if baseline is not None and check_regression:
                baseline.require(name, metric, b.stat)  # a set without the value checks nothing
            value = agg.get(b.stat)
            base_v = baseline.value(name, metric, b.stat) if baseline is not None else None
            delta = None if value is None or base_v is None else value - base_v
            row = GateRow(
                set=name, metric=metric, stat=b.stat, value=value, bound=b.text(), baseline=base_v, delta=delta,
                verdict="pass", key=b.key, direction=spec.direction, unit=spec.unit, limits=b.to_dict(),
                label=aggregate_label(metric, b.stat),
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
                    row.note = f"worse than baseline by {sig(change)} > slack {sig(slack)}"
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


def bundled_names() -> list[str]:
    """The bundled stress-set names ([] where there is no golden/ folder)."""
    try:
        from ..stress import bundled_set_names

        return list(bundled_set_names())
    except (ImportError, ColorfidError):
        return []
