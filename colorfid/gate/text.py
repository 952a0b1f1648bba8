"""The gate's plain-text tables: one per set, and the worst images of the failing metrics."""

from __future__ import annotations

from typing import Any, Mapping

from .._format import sig, signed
from ..metrics import badness
from ..results import Results, stat_label
from .verdicts import GateReport

__all__ = ["format_report"]

def format_report(
    report: GateReport,
    results: Results | Mapping[str, Any] | None = None,
    *,
    set_name: str | None = None,
    worst: bool = True,
) -> str:
    """Plain-text tables: one per set (metric, which statistic over the set's images in words,
    value, bound, baseline, Δ, verdict), then for failing metrics the worst images (value and
    output file) when ``results`` is given. Values are :func:`colorfid._format.sig`, as in the
    report and the demo."""
    res = None
    if results is not None:
        res = results if isinstance(results, Results) else Results.from_dict(results)
    names = [set_name] if set_name is not None else report.sets
    lines: list[str] = []
    head = ("metric", "statistic", "value", "bound", "baseline", "Δ", "verdict")
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
                stat_label(r.stat),
                sig(r.value),
                r.bound or "-",
                sig(r.baseline),
                signed(r.delta),
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
        [str(im["name"]), *[sig((im.get("metrics") or {}).get(c)) for c in cols],
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
