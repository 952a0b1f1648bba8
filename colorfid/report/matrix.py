"""The set x metric matrix (value, bound, baseline, signed change, verdict; worst sets first) and
the trend plots of each set's metrics across checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .._format import finite, sig, signed
from ..metrics import METRICS
from ..results import canonical_stat, stat_label
from .inputs import Run, agg_stat, agg_value
from .numbers import bound_lines, delta_class, direction_of, direction_text
from .svg import trend_svg

__all__ = ["DEFAULT_MATRIX_METRICS", "build_matrix", "Point", "trend_points", "build_trends"]

#: Matrix columns when no gate report is given (those present in the results), stat "mean".
DEFAULT_MATRIX_METRICS = (
    "de00_p95",
    "de00_hc_p95",
    "sat_ratio_hc",
    "hue_shift_hc_mean",
    "brightness_ratio",
    "psnr",
    "ssim",
)


_VERDICT_RANK = {"fail_bound": 0, "fail_regression": 1, "new": 2, "pass": 3, "improved": 4}


_VERDICT_TEXT = {
    "fail_bound": "✗ fail: bound",
    "fail_regression": "✗ fail: regression",
    "new": "• new",
    "pass": "✓ pass",
    "improved": "▲ improved",
}


def build_matrix(
    run: Run, base: Run | None, gate: dict[str, Any] | None
) -> dict[str, Any]:
    """Set x metric matrix: rows = sets (worst first), columns = metrics, cells with verdicts."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    metrics_order: list[str] = []
    sets_order: list[str] = []
    if gate is not None:
        for r in gate["rows"]:
            sname, mname = str(r["set"]), str(r["metric"])
            if mname not in metrics_order:
                metrics_order.append(mname)
            if sname not in sets_order:
                sets_order.append(sname)
            value, baseline = r.get("value"), r.get("baseline")
            delta = finite(r.get("delta"))
            if delta is None and finite(value) is not None and finite(baseline) is not None:
                delta = finite(value) - finite(baseline)  # type: ignore[operator]
            verdict = str(r.get("verdict"))
            stat = canonical_stat(str(r.get("stat") or "mean"))
            cells[(sname, mname)] = {
                "metric": mname,
                "value": sig(finite(value)),
                "stat": stat,
                "stat_label": stat_label(stat),
                "bound": "" if r.get("bound") in (None, "") else str(r.get("bound")),
                "baseline": sig(finite(baseline)) if finite(baseline) is not None else "",
                "delta": signed(delta) if delta is not None else "",
                "delta_class": delta_class(value, baseline, mname),
                "verdict": verdict,
                "verdict_text": _VERDICT_TEXT.get(verdict, verdict),
                "message": str(r.get("note") or r.get("message") or ""),
                "rank": _VERDICT_RANK.get(verdict, 2),
            }
    else:
        present = set()
        for s in run.data["sets"].values():
            present.update((s.get("aggregate") or {}).keys())
        metrics_order = [m for m in DEFAULT_MATRIX_METRICS if m in present]
        sets_order = list(run.data["sets"].keys())
        for sname in sets_order:
            for mname in metrics_order:
                value = agg_stat(run.data, sname, mname, "mean")
                baseline = agg_stat(base.data, sname, mname, "mean") if base is not None else None
                delta = value - baseline if value is not None and baseline is not None else None
                cells[(sname, mname)] = {
                    "metric": mname,
                    "value": sig(value),
                    "stat": "mean",
                    "stat_label": stat_label("mean"),
                    "bound": "",
                    "baseline": sig(baseline) if baseline is not None else "",
                    "delta": signed(delta) if delta is not None else "",
                    "delta_class": delta_class(value, baseline, mname),
                    "verdict": "",
                    "verdict_text": "",
                    "message": "",
                    "rank": 3,
                }

    def set_key(sname: str) -> tuple[int, int, int, str]:
        ranks = [cells[(sname, m)]["rank"] for m in metrics_order if (sname, m) in cells]
        fails = sum(1 for r in ranks if r <= 1)
        worse = sum(1 for m in metrics_order if cells.get((sname, m), {}).get("delta_class") == "worse")
        return (min(ranks, default=3), -fails, -worse, sname)

    sets_order.sort(key=set_key)
    cols = []
    for m in metrics_order:
        spec = METRICS.get(m)
        cols.append(
            {
                "name": m,
                "title": spec.title if spec is not None else m,
                "unit": getattr(spec, "unit", "") if spec is not None else "",
                "description": getattr(spec, "description", "") if spec is not None else "",
                "direction": direction_text(m),
            }
        )
    rows = [{"set": s, "cells": [cells.get((s, m)) for m in metrics_order]} for s in sets_order]
    return {"cols": cols, "rows": rows, "gated": gate is not None}


@dataclass
class Point:
    label: str
    step: int | None
    sets: dict[str, Any]
    gate: dict[str, Any] | None
    sha: str | None
    created: str | None


def trend_points(runs: Sequence[Run], history: Sequence[Mapping[str, Any]]) -> list[Point]:
    pts = [
        Point(
            str(h.get("label") or f"#{i + 1}"),
            h.get("step") if isinstance(h.get("step"), int) else None,
            dict(h.get("sets") or {}),
            h.get("gate"),
            (h.get("provenance") or {}).get("checkpoint_sha256"),
            h.get("created"),
        )
        for i, h in enumerate(history)
    ]
    seen = {(p.sha, p.created) for p in pts}
    for r in runs:
        if (r.sha, r.data.get("created")) in seen and r.sha is not None:
            continue
        sets = {n: dict(s.get("aggregate") or {}) for n, s in r.data["sets"].items()}
        pts.append(Point(r.label, r.step, sets, r.gate, r.sha, r.data.get("created")))
    return pts


def build_trends(
    points: Sequence[Point],
    run: Run,
    base: Run | None,
    gate: dict[str, Any] | None,
    matrix: Mapping[str, Any],
) -> list[dict[str, Any]]:
    if len(points) < 2:
        return []
    steps = [p.step for p in points]
    if all(s is not None for s in steps) and all(b > a for a, b in zip(steps, steps[1:])):  # type: ignore[operator]
        xs = [float(s) for s in steps]  # type: ignore[arg-type]
        xlabels = [_short_step(int(s)) for s in steps]  # type: ignore[arg-type]
    else:
        xs = [float(i) for i in range(len(points))]
        xlabels = [p.label if len(p.label) <= 10 else p.label[:9] + "…" for p in points]
    rows_by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    if gate is not None:
        rows_by_key = {(str(r["set"]), str(r["metric"])): r for r in gate["rows"]}
    metric_names = [c["name"] for c in matrix["cols"]]
    out = []
    for sname in [r["set"] for r in matrix["rows"]]:
        plots = []
        for m in metric_names:
            row = rows_by_key.get((sname, m))
            stat = canonical_stat(str((row or {}).get("stat") or "mean"))
            ys = []
            for p in points:
                a = (p.sets.get(sname) or {}).get(m)
                ys.append(agg_value(a, stat))
            if all(y is None for y in ys):
                continue
            bounds = bound_lines((row or {}).get("limits") or (row or {}).get("bound"))
            baseline = finite((row or {}).get("baseline"))
            if baseline is None and base is not None:
                baseline = agg_stat(base.data, sname, m, stat)
            direction, target = direction_of(m)
            dtext = {"lower": "↓ better", "higher": "↑ better"}.get(direction, f"→ {target if target is not None else 1:g} best")
            title = f"{sname} · {m} ({stat_label(stat)})"
            plots.append({"metric": m, "stat": stat, "stat_label": stat_label(stat),
                          "svg": trend_svg(title, xs, xlabels, ys, bounds, baseline, dtext)})
        if plots:
            out.append({"set": sname, "plots": plots})
    return out


def _short_step(s: int) -> str:
    if s >= 1000 and s % 1000 == 0:
        return f"{s // 1000}k"
    return str(s)
