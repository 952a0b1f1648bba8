"""``colorfid demo``: the main job on the bundled defaults, in one command.

It runs three models on the four bundled stress sets (held out from training):

* ``identity`` — the "before" image passed through, what no model at all scores;
* ``demo_l1`` — a small NAFNet trained with L1 only (``golden/checkpoints/demo_l1.pth``);
* ``demo_color`` — the same network, data, seed and budget trained with
  :class:`colorfid.losses.ColorAwareLoss` (``golden/checkpoints/demo_color.pth``);

gates each with the bundled thresholds (``golden/colorfid.toml``) against the committed baseline
(``golden/baselines/demo_l1.json``: the L1 checkpoint is "the model the team has"), prints the
colour-fidelity table and each verdict, and writes the HTML report (``reports/demo/index.html``:
``demo_color`` in detail with ``demo_l1``'s outputs beside it; ``reports/demo/demo_l1/`` the
failing checkpoint in detail). Exit code 0 when the demo ran, whatever the verdicts.

The checkpoints are made by ``colorfid train -opt options/demo_{l1,color}.yml`` (see
``golden/checkpoints/README.md``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ._format import sig
from .errors import UsageError

__all__ = ["DEMO_MODELS", "EXPERIMENT_METRICS", "DemoSummary", "run_demo", "format_experiment"]

#: model name -> checkpoint path relative to golden/ (None = the identity model).
DEMO_MODELS: dict[str, str | None] = {
    "identity": None,
    "demo_l1": "checkpoints/demo_l1.pth",
    "demo_color": "checkpoints/demo_color.pth",
}

#: (metric, aggregate, column title) of the experiment table.
EXPERIMENT_METRICS: list[tuple[str, str, str]] = [
    ("sat_ratio_hc", "mean", "sat ratio hc"),
    ("hue_shift_hc_p95", "mean", "hue p95 °"),
    ("de00_p95", "mean", "ΔE00 p95"),
    ("psnr", "mean", "PSNR dB"),
    ("ssim", "mean", "SSIM"),
]
EXPERIMENT_SETS = ["saturated_paint", "photos"]
BASELINE = "baselines/demo_l1.json"


@dataclass
class DemoSummary:
    """What the demo measured: results and gate verdicts per model, and where the report is."""

    results: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0

    def passed(self, model: str) -> bool:
        return bool(self.gates[model].passed)


def format_experiment(results: dict[str, Any], sets: list[str] | None = None) -> str:
    """The experiment table (markdown): per set and model, the colour-fidelity metrics."""
    sets = sets or EXPERIMENT_SETS
    head = "| set | model | " + " | ".join(t for _, _, t in EXPERIMENT_METRICS) + " |"
    lines = [head, "|" + "---|" * (2 + len(EXPERIMENT_METRICS))]
    for s in sets:
        for name, res in results.items():
            if s not in res.set_names:
                continue
            vals = [sig(res.aggregate(s, m, stat)) for m, stat, _ in EXPERIMENT_METRICS]
            lines.append(f"| {s} | {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _failures(gate: Any) -> list[str]:
    """'set/metric' of every failing row of a GateReport."""
    rows = gate.to_dict()["rows"]
    return [f"{r['set']}/{r['metric']}" for r in rows if str(r["verdict"]).startswith("fail")]


def run_demo(
    out_dir: str | Path = "reports/demo",
    *,
    device: str | None = None,
    progress: bool | None = None,
    stream: TextIO | None = None,
    update_baseline: bool = False,
) -> DemoSummary:
    """Evaluate the demo models on the bundled sets, gate them, print and write the report.

    ``update_baseline=True`` rewrites ``golden/baselines/demo_l1.json`` from ``demo_l1``'s
    results (how the committed baseline was made).
    """
    from .evaluation import IdentityModel
    from .gate import plan_gate, write_baseline
    from .report import write_report
    from .stress import golden_dir

    out = stream or sys.stdout
    t0 = time.perf_counter()
    golden = golden_dir()
    config = golden / "colorfid.toml"
    baseline = golden / BASELINE
    missing = [str(golden / p) for p in DEMO_MODELS.values() if p and not (golden / p).is_file()]
    if missing:
        raise UsageError(
            "colorfid demo: demo checkpoint(s) missing: " + ", ".join(missing)
            + " (make them with `colorfid train -opt options/demo_l1.yml` and `... demo_color.yml`,"
            " see golden/checkpoints/README.md)"
        )

    def model_of(name: str) -> Any:
        rel = DEMO_MODELS[name]
        return IdentityModel() if rel is None else golden / rel

    if update_baseline:
        first = plan_gate(model_of("demo_l1"), config=config, baseline=None, device=device, progress=progress)
        write_baseline(first.evaluate(), baseline)
        print(f"wrote baseline {baseline}", file=out)

    summary = DemoSummary()
    for name in DEMO_MODELS:
        plan = plan_gate(model_of(name), config=config, baseline=baseline, device=device, progress=progress)
        print(f"evaluating {name} on {', '.join(plan.set_names)} ...", file=out, flush=True)
        summary.results[name] = plan.evaluate()
        summary.gates[name] = plan.judge(summary.results[name])

    print("\nColour fidelity on the held-out stress sets (mean over images):\n", file=out)
    print(format_experiment(summary.results), file=out)
    print(f"\nGate: {config.relative_to(golden.parent) if golden.parent in config.parents else config}"
          f" against baseline {BASELINE} (demo_l1)", file=out)
    sets = list(next(iter(summary.results.values())).set_names)
    print(f"  {'':11s} " + " ".join(f"{s:>16s}" for s in sets) + "   overall", file=out)
    for name, gate in summary.gates.items():
        fails = _failures(gate)
        cells = []
        for s in sets:
            n = sum(1 for f in fails if f.startswith(s + "/"))
            cells.append(f"{'PASS' if n == 0 else f'FAIL ({n})':>16s}")
        print(f"  {name:11s} " + " ".join(cells) + f"   {'PASS' if gate.passed else 'FAIL'}", file=out)
    print("  (FAIL (n): n metrics out of bounds or regressed; the report lists them)", file=out)

    out_dir = Path(out_dir)
    ordered = [summary.results[n] for n in DEMO_MODELS]
    summary.report = write_report(
        ordered, out_dir, gate_report=summary.gates["demo_color"], baseline=summary.results["demo_l1"]
    )
    failing = write_report(
        [summary.results["identity"], summary.results["demo_l1"]],
        out_dir / "demo_l1",
        gate_report=summary.gates["demo_l1"],
    )
    summary.seconds = time.perf_counter() - t0
    print(f"\nreport: {summary.report.resolve()}  (demo_color in detail, demo_l1 beside it)", file=out)
    print(f"        {failing.resolve()}  (demo_l1, the failing checkpoint, in detail)", file=out)
    print(f"done in {summary.seconds:.0f} s", file=out)
    return summary
