"""``colorfid demo``: the main job on the bundled defaults, in one command.

It runs four models on the four bundled stress sets (held out from training):

* ``identity`` — the "before" image passed through, what no model at all scores;
* ``demo_l1`` — a small NAFNet trained with L1 only (``golden/checkpoints/demo_l1.pth``): "the
  model the team has", and the gate's baseline;
* ``demo_color`` — the same network, data, seed and budget trained with
  :class:`colorfid.losses.ColorAwareLoss` and its chroma-deficit term
  (``golden/checkpoints/demo_color.pth``);
* ``demo_color_jitter`` — the same as ``demo_color`` plus LQ-only photometric jitter in training
  (``golden/checkpoints/demo_color_jitter.pth``);

gates each with the demo's own thresholds (``golden/demo.toml``, documented in its header) against
the committed baseline (``golden/baselines/demo_l1.json``), and prints one table: per set and
model every metric the gate judges, as the statistic it judges (the same number, in the same
format, as ``colorfid eval``, the pytest failure table, the report's matrix and the JSON), the
whole-image saturation ratio beside the high-chroma one, each set's bounds and the per-set and
overall verdicts. It writes the HTML reports (``reports/demo/index.html``: every model, the last
in detail with ``demo_l1``'s outputs beside it; ``reports/demo/demo_l1/``: the baseline model in
detail). Exit code 0 when the demo ran, whatever the verdicts.

The checkpoints are made by ``colorfid train -opt options/demo_<name>.yml`` (see
``golden/checkpoints/README.md``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

from ._format import sig, signed
from .errors import UsageError

__all__ = ["DEMO_MODELS", "DEMO_CONFIG", "BASELINE", "BASELINE_MODEL", "COLUMNS", "DemoSummary", "run_demo",
           "format_demo_table"]

#: model name -> checkpoint path relative to golden/ (None = the identity model).
DEMO_MODELS: dict[str, str | None] = {
    "identity": None,
    "demo_l1": "checkpoints/demo_l1.pth",
    "demo_color": "checkpoints/demo_color.pth",
    "demo_color_jitter": "checkpoints/demo_color_jitter.pth",
}
#: The demo's thresholds and baseline (relative to golden/), and the model the baseline is made of.
DEMO_CONFIG = "demo.toml"
BASELINE = "baselines/demo_l1.json"
BASELINE_MODEL = "demo_l1"

#: The table's columns: (short heading, metric, statistic when the gate does not judge the
#: metric). Gated metrics show the statistic of the gate's bound; ``sat_ratio`` (not gated) sits
#: beside ``sat_ratio_hc`` to show what a whole-image average says. The legend under the table
#: spells each heading out with :func:`colorfid.results.aggregate_label`.
COLUMNS: list[tuple[str, str, str]] = [
    ("sat whole", "sat_ratio", "mean"),
    ("sat hc", "sat_ratio_hc", "mean"),
    ("chroma hc", "chroma_ratio_hc", "mean"),
    ("hue p95", "hue_shift_hc_p95", "mean"),
    ("ΔE p95", "de00_p95", "mean"),
    ("PSNR", "psnr", "mean"),
    ("SSIM", "ssim", "mean"),
    ("NaN/Inf", "nonfinite_count", "worst"),
    ("out [0,1]", "out_of_range_frac", "worst"),
    ("grey", "grey_collapse", "mean"),
]


@dataclass
class DemoSummary:
    """What the demo measured: results and gate verdicts per model, the table, the reports."""

    results: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    table: str = ""
    report: Path | None = None
    reports: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def passed(self, model: str) -> bool:
        return bool(self.gates[model].passed)


def _cell(results: Any, gate: Any, set_name: str, metric: str, stat: str) -> tuple[str, Any]:
    """(value text, gate row or None) of one (set, metric): the gate row's value when the gate
    judges the metric there (its statistic), else the results' ``stat``."""
    row = next((r for r in gate.rows if r.set == set_name and r.metric == metric), None)
    if row is not None:
        return sig(row.value), row
    try:
        value = results.aggregate(set_name, metric, stat)
    except Exception:  # noqa: BLE001 - a metric these results lack: shown as missing
        value = None
    return ("n/a" if value is None else sig(value)), None


def _verdict(gate: Any, set_name: str, short: dict[str, str]) -> str:
    fails = [r for r in gate.rows if r.set == set_name and r.failed]
    if not fails:
        return "PASS"
    fails.sort(key=lambda r: r.verdict != "fail_bound")  # bounds first, then regressions
    names = [short.get(r.metric, r.metric) + ("↓" if r.verdict == "fail_regression" else "") for r in fails]
    more = f" +{len(names) - 3} more" if len(names) > 3 else ""
    return "FAIL " + ", ".join(names[:3]) + more


def format_demo_table(results: dict[str, Any], gates: dict[str, Any], sets: Sequence[str] | None = None,
                      *, baseline_model: str = BASELINE_MODEL) -> str:
    """The demo's one table: per set, the bound row and one row per model (every column of
    :data:`COLUMNS`, values as the gate judges them), the set's verdict per model; then the overall
    verdicts and a legend that spells every heading out."""
    from .results import aggregate_label

    models = list(results)
    first = results[models[0]]
    sets = list(sets or first.set_names)
    short = {m: h for h, m, _ in COLUMNS}
    head = ["set / model", *[h for h, _, _ in COLUMNS], "verdict"]
    rows: list[list[str] | str] = [head]  # a str: a set's heading line
    notes: list[str] = []
    for s in sets:
        rows.append(f"{s} ({len(first.sets[s]['images'])} images)")
        bounds = []
        for _, metric, _ in COLUMNS:
            row = next((r for g in gates.values() for r in g.rows if r.set == s and r.metric == metric), None)
            bounds.append("-" if row is None else (row.bound or "vs base"))
        rows.append(["  bound", *bounds, ""])
        for model in models:
            cells = [_cell(results[model], gates[model], s, metric, stat)[0] for _, metric, stat in COLUMNS]
            rows.append([f"  {model}", *cells, _verdict(gates[model], s, short)])
        if any(results[m].aggregate(s, "sat_ratio", "mean") is None for m in models):
            diffs = ", ".join(f"{m} {signed(results[m].aggregate(s, 'sat_diff', 'mean'))}" for m in models)
            notes.append(f"{s}: sat whole is n/a where the GT's mean saturation is under the protocol's "
                         "ratio_floor (0.10, a near-grey image: a ratio of two near-zero means would read as "
                         f"gross over-saturation); {aggregate_label('sat_diff', 'mean')}: {diffs}")
    table = [r for r in rows if isinstance(r, list)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for r in rows:
        if isinstance(r, str):
            lines.append(r)
            continue
        cells = [r[0].ljust(widths[0])] + [c.rjust(widths[i + 1]) for i, c in enumerate(r[1:-1])] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
        if r is head:
            lines.append("-" * len(lines[-1]))
    overall = "   ".join(f"{m} {'PASS' if gates[m].passed else 'FAIL'}" for m in models)
    lines += ["", f"overall: {overall}", "", "columns (each the statistic over the set's images the gate judges):"]
    stat_of = {}
    for g in gates.values():
        for r in g.rows:
            stat_of.setdefault(r.metric, r.stat)
    for h, metric, stat in COLUMNS:
        gated = metric in stat_of
        lines.append(f"  {h:<10} {metric} = {aggregate_label(metric, stat_of.get(metric, stat))}"
                     + ("" if gated else "  [not gated: shown beside sat hc]"))
    lines += ["  hc = pixels whose GT HSV saturation >= 0.5 (chroma hc: GT C*ab >= 40). Every gated cell must also "
              f"not regress against the baseline ({baseline_model}); 'vs base': that is its only check. "
              f"FAIL x: x is outside its bound; x↓: x regressed against {baseline_model}"]
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def _headlines(summary: DemoSummary, set_name: str = "saturated_paint") -> list[str]:
    """Plain sentences drawn from the numbers: on ``set_name``, the whole-image saturation ratio
    and the high-chroma one of each model measured against the band the gate puts on the latter,
    and the gate's verdict."""
    out = []
    for model, res in summary.results.items():
        if set_name not in res.set_names:
            continue
        whole = res.aggregate(set_name, "sat_ratio", "mean")
        g = summary.gates[model]
        row = next((r for r in g.rows if r.set == set_name and r.metric == "sat_ratio_hc"), None)
        if whole is None or row is None or row.value is None or row.limits.get("band") is None:
            continue
        t, band = row.limits.get("target", 1.0), row.limits["band"]

        def side(v: float) -> str:
            return "inside" if abs(v - t) <= band else "OUTSIDE"

        out.append(f"  {model:<18} whole image {sig(whole)} ({side(whole)} {row.bound}), hc pixels {sig(row.value)} "
                   f"({side(row.value)}): {set_name} {'PASS' if g.set_passed(set_name) else 'FAIL'}")
    return out


def run_demo(
    out_dir: str | Path = "reports/demo",
    *,
    device: str | None = None,
    progress: bool | None = None,
    stream: TextIO | None = None,
    update_baseline: bool = False,
    cache_dir: str | Path | None = None,
) -> DemoSummary:
    """Evaluate the demo models on the bundled sets, gate them, print the table, write the reports.

    ``update_baseline=True`` first rewrites ``golden/baselines/demo_l1.json`` from ``demo_l1``'s
    results under ``golden/demo.toml``'s protocol (how the committed baseline is made).
    """
    from .evaluation import IdentityModel
    from .gate import plan_gate, write_baseline
    from .report import write_report
    from .stress import golden_dir

    out = stream or sys.stdout
    t0 = time.perf_counter()
    golden = golden_dir()
    config = golden / DEMO_CONFIG
    baseline = golden / BASELINE
    missing = [str(golden / p) for p in DEMO_MODELS.values() if p and not (golden / p).is_file()]
    if missing:
        raise UsageError(
            "colorfid demo: demo checkpoint(s) missing: " + ", ".join(missing)
            + " (make them with `colorfid train -opt options/<name>.yml`, see golden/checkpoints/README.md)"
        )

    def model_of(name: str) -> Any:
        rel = DEMO_MODELS[name]
        return IdentityModel() if rel is None else golden / rel

    kw = {"device": device, "progress": progress, "cache_dir": cache_dir}
    if update_baseline:
        first = plan_gate(model_of(BASELINE_MODEL), config=config, baseline=None, **kw)
        write_baseline(first.evaluate(), baseline)
        print(f"wrote baseline {baseline}", file=out)

    summary = DemoSummary()
    for name in DEMO_MODELS:
        plan = plan_gate(model_of(name), config=config, baseline=baseline, **kw)
        print(f"evaluating {name} on {', '.join(plan.set_names)} ...", file=out, flush=True)
        summary.results[name] = plan.evaluate()
        summary.gates[name] = plan.judge(summary.results[name])

    rel = config.relative_to(golden.parent) if golden.parent in config.parents else config
    print(f"\nColour fidelity on the held-out stress sets, gated by {rel} against {BASELINE} ({BASELINE_MODEL}):\n",
          file=out)
    summary.table = format_demo_table(summary.results, summary.gates)
    print(summary.table, file=out)
    lines = _headlines(summary)
    if lines:
        print("\nsaturated_paint: saturation pred / GT (1 = faithful) over the whole image and over its strongly "
              "coloured (hc) pixels, against the gate's band on the hc ratio:", file=out)
        print("\n".join(lines), file=out)

    out_dir = Path(out_dir)
    names = list(DEMO_MODELS)
    detailed = names[-1]
    summary.report = write_report(
        [summary.results[n] for n in names], out_dir, gate_report=summary.gates[detailed],
        baseline=summary.results[BASELINE_MODEL],
    )
    summary.reports[detailed] = summary.report
    summary.reports[BASELINE_MODEL] = write_report(
        [summary.results["identity"], summary.results[BASELINE_MODEL]], out_dir / BASELINE_MODEL,
        gate_report=summary.gates[BASELINE_MODEL],
    )
    summary.seconds = time.perf_counter() - t0
    print(f"\nreport: {summary.report.resolve()}  ({detailed} in detail, {BASELINE_MODEL}'s outputs beside it)",
          file=out)
    print(f"        {summary.reports[BASELINE_MODEL].resolve()}  ({BASELINE_MODEL}, the baseline model, in detail)",
          file=out)
    print(f"done in {summary.seconds:.0f} s", file=out)
    return summary
