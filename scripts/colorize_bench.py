#!/usr/bin/env python
"""The colourization experiment of the README ("Colourization"): the same small NAFNet trained
with different losses under one budget, measured on a validation split of the training images
and on the held-out ``colorization`` stress set.

    python scripts/colorize_bench.py split                  # experiments/colorize_split/{train,val}
    python scripts/colorize_bench.py run mse l1 lab color_aware antiavg --seeds 0 1
    python scripts/colorize_bench.py run cand_conf_1 ... --seeds 0     # the anti-average grid
    python scripts/colorize_bench.py eval                   # every finished run: val split + held-out set
    python scripts/colorize_bench.py select                 # the anti-average grid on the validation split
    python scripts/colorize_bench.py table                  # mean and spread over seeds, held-out set
    python scripts/colorize_bench.py balance                # the unnormalised-Lab pitfall (loss_balance)
    python scripts/colorize_bench.py probe                  # hue_uncertainty_probe of the losses
    python scripts/colorize_bench.py hues                   # the hue each run's colours collapse to

Recipes are ``options/colorize_<recipe>.yml``; ``cand_<name>`` are the anti-average candidates of
:data:`CANDIDATES` (``options/colorize_l1.yml`` plus the terms listed there). A run of recipe
``r`` with seed ``s`` is the experiment ``colorize_<r>_s<s>`` (the options file with its ``name``
and ``manual_seed`` replaced, written to ``experiments/colorize_runs/opts/``), trained in its own
process with one thread (``OMP_NUM_THREADS=1``); finished runs are skipped. Everything is
written under ``experiments/`` (not versioned).

Budget: 400 iterations per run (``TOTAL_ITER``). The recipes were first written for 800, but an
800-iteration run took 11-16 min on one thread of the shared 2-core machine, over the 10 min
allowed per run, so every recipe was cut to 400 uniformly. The anti-average grid was run
(seed 0) at the 800 budget before that cut; ``options/colorize_antiavg.yml`` (L1 +
HueDiversityLoss 1.0) is its choice on the validation split (score = |chroma_ratio - 1| +
|hue_spread_ratio - 1|: huediv_1 0.49, sat_1 1.00, conf_0.5 1.38, conf_2 2.33; colordiv_0.5
unfinished), made before any held-out number of a trained model was read.

Validation split: every 6th file of ``golden/train/gt`` sorted by name (16 of 96) is held out of
training (``experiments/colorize_split/val``, with grey inputs written by
:func:`colorfid.train.data.to_grayscale`, 8-bit); the other 80 train.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "experiments" / "colorize_split"
RUNS = REPO / "experiments" / "colorize_runs"
TOTAL_ITER = 400
VAL_EVERY = 6  # every 6th training image (sorted by name) is the validation split

#: The anti-average grid, chosen on the validation split (``select``): L1 in sRGB plus these
#: terms (YAML lines under ``train``). Weights span the terms' documented scales.
CANDIDATES: dict[str, str] = {
    "conf_0.5": "  conf_opt:\n    type: ConfidenceLoss\n    loss_weight: 0.5\n",
    "conf_2": "  conf_opt:\n    type: ConfidenceLoss\n    loss_weight: 2.0\n",
    "sat_1": "  sat_opt:\n    type: SaturationLoss\n    loss_weight: 1.0\n",
    "huediv_1": "  huediv_opt:\n    type: HueDiversityLoss\n    loss_weight: 1.0\n",
    "colordiv_0.5": "  colordiv_opt:\n    type: ColorDiversityLoss\n    loss_weight: 0.5\n",
    "conf_huediv_1": ("  conf_opt:\n    type: ConfidenceLoss\n    loss_weight: 1.0\n"
                      "  huediv_opt:\n    type: HueDiversityLoss\n    loss_weight: 1.0\n"),
}

#: Metrics the tables show (keys of colorfid.metrics.METRICS).
TABLE_METRICS = ("chroma_ratio", "hue_spread_ratio", "hue_collapse", "sat_ratio", "grey_collapse", "de00_mean", "psnr",
                 "ssim")


def split() -> None:
    """Link the training GTs into train/ and val/ and write the validation split's grey inputs."""
    import torch

    from colorfid.io import read_image, write_image
    from colorfid.train.data import to_grayscale

    src = REPO / "golden" / "train" / "gt"
    files = sorted(p for p in src.iterdir() if p.suffix == ".png")
    for i, p in enumerate(files):
        part = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
        d = SPLIT / part / "gt"
        d.mkdir(parents=True, exist_ok=True)
        link = d / p.name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(p, d))
        if part == "val":
            lq = SPLIT / part / "lq" / p.name
            if not lq.exists():
                lq.parent.mkdir(parents=True, exist_ok=True)
                write_image(lq, to_grayscale(read_image(p).to(torch.float64)), bits=8)
    print(f"{SPLIT}: train {len(list((SPLIT / 'train' / 'gt').iterdir()))}, "
          f"val {len(list((SPLIT / 'val' / 'gt').iterdir()))}")


def options_text(recipe: str, seed: int) -> str:
    """The options of one run: the recipe's file with its name and seed replaced."""
    if recipe.startswith("cand_"):
        text = (REPO / "options" / "colorize_l1.yml").read_text()
        extra = CANDIDATES[recipe[len("cand_"):]]
        text = text.replace("  grad_clip_norm: 1.0\n", extra + "  grad_clip_norm: 1.0\n", 1)
    else:
        text = (REPO / "options" / f"colorize_{recipe}.yml").read_text()
    text, n1 = re.subn(r"(?m)^name: .*$", f"name: {run_name(recipe, seed)}", text, count=1)
    text, n2 = re.subn(r"(?m)^manual_seed: .*$", f"manual_seed: {seed}", text, count=1)
    assert n1 == n2 == 1, recipe
    return text


def run_name(recipe: str, seed: int) -> str:
    return f"colorize_{recipe}_s{seed}"


def checkpoint(recipe: str, seed: int) -> Path:
    return REPO / "experiments" / run_name(recipe, seed) / "models" / f"net_g_{TOTAL_ITER}.pth"


def run(recipes: list[str], seeds: list[int]) -> None:
    """Train each (recipe, seed) in turn, one process and one thread each."""
    for seed in seeds:
        for r in recipes:
            if checkpoint(r, seed).exists():
                print(f"{run_name(r, seed)}: done already", flush=True)
                continue
            opt = RUNS / "opts" / f"{run_name(r, seed)}.yml"
            opt.parent.mkdir(parents=True, exist_ok=True)
            opt.write_text(options_text(r, seed))
            log = RUNS / "logs" / f"{run_name(r, seed)}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            t0 = time.time()
            with open(log, "w") as f:
                code = subprocess.call([sys.executable, "-m", "colorfid.train", "-opt", str(opt), "--no-progress"],
                                       cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
            print(f"{run_name(r, seed)}: exit {code}, {time.time() - t0:.0f} s", flush=True)


def finished() -> list[tuple[str, int]]:
    out = []
    for d in sorted((REPO / "experiments").glob("colorize_*_s*")):
        m = re.fullmatch(r"colorize_(.+)_s(\d+)", d.name)
        if m and (d / "models" / f"net_g_{TOTAL_ITER}.pth").exists():
            out.append((m.group(1), int(m.group(2))))
    return out


def evaluate_runs(only: list[str] | None = None) -> None:
    """Evaluate every finished run on the validation split and the held-out colorization set."""
    import torch

    from colorfid.evaluation import evaluate

    torch.set_num_threads(1)
    sets = {"val": [f"colorize_val={SPLIT / 'val'}"], "test": ["colorization"]}
    for r, s in finished():
        if only and r not in only:
            continue
        for part, spec in sets.items():
            out = RUNS / "results" / f"{run_name(r, s)}_{part}.json"
            if out.exists() and out.stat().st_mtime > checkpoint(r, s).stat().st_mtime:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            evaluate(str(checkpoint(r, s)), spec, progress=False, device="cpu").save(out)
            print(f"{out.name}", flush=True)
    for part, spec in sets.items():  # the references: grey identity and the GT itself
        out = RUNS / "results" / f"identity_{part}.json"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            evaluate("identity", spec, progress=False, device="cpu").save(out)


def load(name: str, part: str) -> dict[str, Any] | None:
    p = RUNS / "results" / f"{name}_{part}.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    (sd,) = d["sets"].values()
    return sd


def image_mean(sd: dict[str, Any], metric: str) -> float:
    vals = [im["metrics"].get(metric) for im in sd["images"]]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def val_score(sd: dict[str, Any]) -> float:
    """The selection score on the validation split: |chroma_ratio - 1| + |hue_spread_ratio - 1|
    (means over images): how far the colours are from the GT's colourfulness and hue spread."""
    return abs(image_mean(sd, "chroma_ratio") - 1.0) + abs(image_mean(sd, "hue_spread_ratio") - 1.0)


def select() -> None:
    """Print the anti-average grid on the validation split and the chosen candidate: the lowest
    :func:`val_score` among candidates whose mean ΔE00 is within 1 ΔE00 of L1's (seed 0)."""
    base = load(run_name("l1", 0), "val")
    ref = image_mean(base, "de00_mean") if base else math.nan
    rows = []
    for r, s in finished():
        if s != 0 or not (r.startswith("cand_") or r in ("l1", "mse", "lab", "color_aware", "antiavg")):
            continue
        sd = load(run_name(r, s), "val")
        if sd is None:
            continue
        rows.append((r, val_score(sd), *(image_mean(sd, m) for m in TABLE_METRICS)))
    print(f"validation split ({SPLIT / 'val'}), seed 0; score = |chroma_ratio - 1| + |hue_spread_ratio - 1|")
    print("| recipe | score | " + " | ".join(TABLE_METRICS) + " |")
    print("|---" * (len(TABLE_METRICS) + 2) + "|")
    for row in sorted(rows, key=lambda x: x[1]):
        print(f"| {row[0]} | {row[1]:.3f} | " + " | ".join(f"{v:.3f}" for v in row[2:]) + " |")
    de_col = 2 + TABLE_METRICS.index("de00_mean")
    ok = [row for row in rows if row[0].startswith("cand_") and row[de_col] <= ref + 1.0]
    if ok:
        best = min(ok, key=lambda x: x[1])
        print(f"chosen: {best[0]} (score {best[1]:.3f}; L1's de00_mean {ref:.2f}, limit {ref + 1.0:.2f})")


def table(recipes: list[str] | None = None) -> None:
    """Held-out set: mean over images per run, then mean and (min-max) over seeds, per recipe."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r, s in finished():
        sd = load(run_name(r, s), "test")
        if sd is not None and (recipes is None or r in recipes):
            by.setdefault(r, []).append(sd)
    ident = load("identity", "test")
    print("held-out colorization set: per-run mean over images; mean over seeds (min-max), n seeds")
    print("| recipe | seeds | " + " | ".join(TABLE_METRICS) + " |")
    print("|---" * (len(TABLE_METRICS) + 2) + "|")
    if ident:
        print("| grey identity | - | " + " | ".join(f"{image_mean(ident, m):.3f}" for m in TABLE_METRICS) + " |")
    for r, sds in by.items():
        cells = []
        for m in TABLE_METRICS:
            v = [image_mean(sd, m) for sd in sds]
            cells.append(f"{statistics.fmean(v):.3f} ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 else f"{v[0]:.3f}")
        print(f"| {r} | {len(sds)} | " + " | ".join(cells) + " |")
    gate_verdicts(recipes)


def gate_verdicts(recipes: list[str] | None = None) -> None:
    """The bundled gate on each run's held-out results (``[sets.colorization]`` of
    golden/colorfid.toml, as ``colorfid eval --sets colorization`` judges them): pass / fail and
    the keys that fail, per run."""
    from colorfid.evaluation import Results
    from colorfid.gate import judge, load_thresholds

    th = load_thresholds(REPO / "golden" / "colorfid.toml")
    print()
    print("gate ([sets.colorization] of golden/colorfid.toml) on the held-out set, per run")
    names = [("identity", "grey identity")] + [(run_name(r, s), run_name(r, s)) for r, s in finished()
                                               if recipes is None or r in recipes]
    for name, label in names:
        p = RUNS / "results" / f"{name}_test.json"
        if not p.exists():
            continue
        rep = judge(Results.load(p), th)
        failed = sorted({row.metric for row in rep.failed_rows})
        print(f"{label}: {'PASS' if rep.passed else 'FAIL'}" + (f" ({', '.join(failed)})" if failed else ""))


def hues(recipes: list[str] | None = None) -> None:
    """Where each recipe's colours go on the held-out set: the hue angle of the chroma-weighted mean
    (a*, b*) of its outputs (colorfid.metrics.mean_hue of the moments pooled over the set's
    images), per seed, next to the GT's and that of the outputs' mean chroma."""
    import torch

    from colorfid.io import read_image
    from colorfid.metrics import ChromaMoments, chroma_moments, mean_hue
    from colorfid.models import load_model, run_model
    from colorfid.stress import bundled_set

    torch.set_num_threads(1)
    pairs = bundled_set("colorization").pairs

    def pooled(ms: list[ChromaMoments]) -> ChromaMoments:
        return ChromaMoments(*(statistics.fmean(v) for v in zip(*ms)))

    gt = pooled([chroma_moments(read_image(p.gt).double()) for p in pairs])
    print(f"GT: mean hue {mean_hue(gt):.0f}°, mean C* {gt.c:.1f}, |mean (a*, b*)| {math.hypot(gt.a, gt.b):.1f}")
    for r, s in finished():
        if recipes and r not in recipes:
            continue
        model = load_model(checkpoint(r, s))
        outs = [run_model(model, read_image(p.lq), device="cpu") for p in pairs]
        m = pooled([chroma_moments(o.clamp(0, 1).double()) for o in outs])
        print(f"{run_name(r, s)}: mean hue {mean_hue(m):.0f}°, mean C* {m.c:.1f}, |mean (a*, b*)| {math.hypot(m.a, m.b):.1f}",
              flush=True)


def _pairs(set_name: str, n: int) -> tuple[Any, Any]:
    import torch

    from colorfid.io import read_image
    from colorfid.stress import bundled_set

    ps = bundled_set(set_name).pairs[:n]
    size = min(min(read_image(p.gt).shape[-2:]) for p in ps)
    crop = lambda x: x[..., :size, :size]  # noqa: E731
    gt = torch.stack([crop(read_image(p.gt)) for p in ps])
    lq = torch.stack([crop(read_image(p.lq)) for p in ps])
    return lq, gt


def balance() -> None:
    """The unnormalised-Lab pitfall: an MSE on raw CIELAB next to an L1 in sRGB, and the
    normalised LabLoss next to the same L1, on grey inputs vs colour targets (the colourization
    set: the start of training)."""
    import torch

    from colorfid.color import srgb_to_lab
    from colorfid.losses import LabLoss
    from colorfid.testing import loss_balance

    lq, gt = _pairs("colorization", 4)
    l1 = (lambda p, t: (p - t).abs().mean(), 1.0)
    raw = {"lab_mse_raw": (lambda p, t: ((srgb_to_lab(p) - srgb_to_lab(t)) ** 2).mean(), 1.0), "l1": l1}
    norm = {"lab_loss": (LabLoss(), 1.0), "l1": l1}
    for title, terms in (("MSE on raw CIELAB + L1", raw), ("LabLoss (normalised) + L1", norm)):
        print(title)
        print(loss_balance(terms, lq, gt, warn=False))
        print()


def probe() -> None:
    """hue_uncertainty_probe of the recipes' pixel losses: the colour each picks when the
    target's hue is uncertain (±spread about blue at L* 65, C* 35) and the chroma it keeps."""
    import torch

    from colorfid.losses import ColorAwareLoss, ConfidenceLoss, LabLoss
    from colorfid.testing import hue_uncertainty_probe

    l1 = lambda p, t: (p - t).abs().mean()  # noqa: E731
    mse = lambda p, t: ((p - t) ** 2).mean()  # noqa: E731
    conf = ConfidenceLoss()
    losses = {"L1": l1, "MSE": mse, "LabLoss": LabLoss(), "L1 + ConfidenceLoss": lambda p, t: l1(p, t) + conf(p, t),
              "ColorAwareLoss": ColorAwareLoss()}
    spreads = (30.0, 60.0, 90.0, 180.0)
    print("chroma kept by the best single colour for targets spread over hue ± spread (1 = full chroma)")
    print("| loss | " + " | ".join(f"±{s:.0f}°" for s in spreads) + " |")
    print("|---" * (len(spreads) + 1) + "|")
    for name, fn in losses.items():
        print(f"| {name} | " + " | ".join(f"{hue_uncertainty_probe(fn, s, steps=200).chroma_kept:.2f}" for s in spreads)
              + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("split")
    p = sub.add_parser("run")
    p.add_argument("recipes", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p = sub.add_parser("eval")
    p.add_argument("recipes", nargs="*")
    sub.add_parser("select")
    p = sub.add_parser("table")
    p.add_argument("recipes", nargs="*")
    sub.add_parser("balance")
    sub.add_parser("probe")
    p = sub.add_parser("hues")
    p.add_argument("recipes", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd == "split":
        split()
    elif a.cmd == "run":
        run(a.recipes, a.seeds)
    elif a.cmd == "eval":
        evaluate_runs(a.recipes or None)
    elif a.cmd == "select":
        select()
    elif a.cmd == "table":
        table(a.recipes or None)
    elif a.cmd == "balance":
        balance()
    elif a.cmd == "probe":
        probe()
    elif a.cmd == "hues":
        hues(a.recipes or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
