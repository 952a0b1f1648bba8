#!/usr/bin/env python
"""Which lever stops the washout? Train the demo network under each recipe and measure it.

    python scripts/washout_levers.py                          # every recipe, seed 2026
    python scripts/washout_levers.py --recipes l1 cal+def+jit --seeds 2026 7
    python scripts/washout_levers.py --table-only             # re-print from finished runs

Each recipe is ``options/demo_l1.yml`` with only ``train.pixel_opt`` (L1 / ColorAwareLoss /
ColorAwareLoss with its chroma-deficit term) and ``datasets.train.color_jitter`` (off / the
jitter of ``options/demo_color_jitter.yml``) changed, trained by ``colorfid train`` (same data,
network, schedule and budget as the demo checkpoints), then measured by ``colorfid eval`` on the
held-out ``saturated_paint``, ``photos`` and ``neutral`` sets and on ten *validation* rooms: the
saturated_paint recipe (same generator, ranges and paint share) with another seed, so a recipe
can be chosen without looking at the gate's own set. Runs go to ``--out`` (default
``experiments/levers``); a finished run is reused. Dev-time script: it imports
``scripts/make_golden_data.py`` (colour-science) for the validation rooms.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "options" / "demo_l1.yml"
JITTER = yaml.safe_load((ROOT / "options" / "demo_color_jitter.yml").read_text())["datasets"]["train"]["color_jitter"]
COLOR = yaml.safe_load((ROOT / "options" / "demo_color.yml").read_text())["train"]["pixel_opt"]
PLAIN_COLOR = {k: v for k, v in COLOR.items() if k != "deficit_weight"}
L1 = {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}

#: recipe -> (pixel_opt, color_jitter or None)
RECIPES: dict[str, tuple[dict, dict | None]] = {
    "l1": (L1, None),
    "l1+jit": (L1, JITTER),
    "cal": (PLAIN_COLOR, None),
    "cal+jit": (PLAIN_COLOR, JITTER),
    "cal+def": (COLOR, None),
    "cal+def+jit": (COLOR, JITTER),
}
SETS = ["saturated_paint", "photos", "neutral"]
VAL_SEED, VAL_TAG = 4242, "val_paint"


def _generator():
    spec = importlib.util.spec_from_file_location("make_golden_data", ROOT / "scripts" / "make_golden_data.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules["make_golden_data"] = gen
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    return gen


def build_validation_rooms(folder: Path) -> Path:
    """Ten rooms drawn like saturated_paint (generator, PAINT_RANGES, PAINT_SHARE_GATE), other seed."""
    if (folder / "gt").is_dir() and len(list((folder / "gt").glob("*.png"))) == 10:
        return folder
    gen = _generator()
    for i in range(10):
        rng = gen.rng_for(VAL_SEED, VAL_TAG, i)
        fam = gen.PAINT_PRIMARY_GATE[i % len(gen.PAINT_PRIMARY_GATE)]
        gt = gen.to_u8(gen.render_room(rng, *gen.PAINT_SIZE, "interior", fam, paint_share=gen.PAINT_SHARE_GATE))
        lq = gen.sample_degradation(rng, gen.PAINT_RANGES)(gen.from_u8(gt), rng)
        gen.write_png(folder / "gt" / f"val_{i:02d}_{fam}.png", gt)
        gen.write_png(folder / "lq" / f"val_{i:02d}_{fam}.png", lq)
    return folder


def _run(cmd: list[str], log: Path, ok: tuple[int, ...] = (0,)) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc not in ok:
        raise SystemExit(f"{cmd[3]} failed with exit code {rc}; see {log}")


def train_and_eval(recipe: str, seed: int, out: Path, val: Path) -> Path:
    name = f"levers_{recipe.replace('+', '_')}_s{seed}"
    results = out / f"{name}.json"
    if results.is_file():
        return results
    opt = yaml.safe_load(BASE.read_text())
    pixel, jitter = RECIPES[recipe]
    opt["name"] = name
    opt["manual_seed"] = seed
    opt["train"]["pixel_opt"] = copy.deepcopy(pixel)
    if jitter is not None:
        opt["datasets"]["train"]["color_jitter"] = copy.deepcopy(jitter)
    opt["path"]["experiments_root"] = str(out / name)
    opt.setdefault("val", {})["sets"] = ["saturated_paint"]
    yml = out / f"{name}.yml"
    yml.write_text(yaml.safe_dump(opt, sort_keys=False), encoding="utf-8")
    log = out / f"{name}.log"
    colorfid = [sys.executable, "-m", "colorfid"]
    _run([*colorfid, "train", "-opt", str(yml)], log)
    ckpt = max((out / name / "models").glob("net_g_*.pth"), key=lambda p: int(p.stem.split("_")[-1]))
    _run([*colorfid, "eval", "--checkpoint", str(ckpt), "--sets", *SETS, str(val), "--no-progress",
          "--json", str(results), "--config", str(ROOT / "golden" / "demo.toml")], log, ok=(0, 1))  # 1 = gate failed
    return results


def _cells(results: Path) -> dict[str, float | None]:
    r = json.loads(results.read_text())["sets"]
    agg = lambda s, m: (r.get(s, {}).get("aggregate", {}).get(m) or {}).get("mean")  # noqa: E731
    val = next(k for k in r if k not in SETS)
    return {
        "paint_hc": agg("saturated_paint", "sat_ratio_hc"),
        "paint_whole": agg("saturated_paint", "sat_ratio"),
        "val_hc": agg(val, "sat_ratio_hc"),
        "photos_hc": agg("photos", "sat_ratio_hc"),
        "photos_psnr": agg("photos", "psnr"),
        "neutral_psnr": agg("neutral", "psnr"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[2026])
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "levers")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    val = build_validation_rooms(a.out / "validation_rooms")
    rows = []
    for recipe in a.recipes:
        for seed in a.seeds:
            path = a.out / f"levers_{recipe.replace('+', '_')}_s{seed}.json"
            if not a.table_only:
                path = train_and_eval(recipe, seed, a.out, val)
            if path.is_file():
                rows.append((recipe, seed, _cells(path)))
                print(f"done: {recipe} seed {seed}", file=sys.stderr, flush=True)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"  # noqa: E731
    print("| recipe | seed | saturated_paint: sat ratio hc | whole-image sat ratio | validation rooms: sat ratio hc "
          "| photos: sat ratio hc | photos PSNR dB | neutral PSNR dB |")
    print("|---|---|---|---|---|---|---|---|")
    keys = ("paint_hc", "paint_whole", "val_hc", "photos_hc", "photos_psnr", "neutral_psnr")
    for recipe, seed, c in rows:
        print(f"| {recipe} | {seed} | " + " | ".join(fmt(c[k]) for k in keys) + " |")
    seeds_of = {r: [c for rr, _, c in rows if rr == r] for r in dict.fromkeys(r for r, _, _ in rows)}
    if any(len(cs) > 1 for cs in seeds_of.values()):
        print()
        print("Mean over seeds (min-max):")
        print()
        print("| recipe | seeds | saturated_paint: sat ratio hc | whole-image sat ratio | validation rooms: sat ratio hc "
              "| photos: sat ratio hc | photos PSNR dB | neutral PSNR dB |")
        print("|---|---|---|---|---|---|---|---|")
        for recipe, cs in seeds_of.items():
            cells = []
            for k in keys:
                vs = [c[k] for c in cs if c[k] is not None]
                cells.append("n/a" if not vs else fmt(sum(vs) / len(vs)) + (
                    f" ({fmt(min(vs))}-{fmt(max(vs))})" if len(vs) > 1 else ""))
            print(f"| {recipe} | {len(cs)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
