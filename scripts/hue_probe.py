#!/usr/bin/env python
"""Which losses pull toward grey when the hue is uncertain? (colorfid.testing.hue_uncertainty_probe)

    python scripts/hue_probe.py                  # every colorfid loss + L1/MSE, at ±30°, ±60°, ±90°
    python scripts/hue_probe.py --spreads 45 90

Prints a markdown table of ``chroma_kept`` (C*ab of the preferred prediction / the targets' C*ab)
and each loss's ratio to L1's; the README's table comes from this script.
"""

from __future__ import annotations

import argparse

import torch

from colorfid.losses import ColorAwareLoss, ConfidenceLoss, LabLoss, SaturationLoss
from colorfid.testing import hue_uncertainty_probe


def _with(base: torch.nn.Module, extra: torch.nn.Module, w: float):
    return lambda p, t: base(p, t) + w * extra(p, t)


LOSSES = {
    "L1 (sRGB)": lambda: torch.nn.L1Loss(),
    "MSE (sRGB)": lambda: torch.nn.MSELoss(),
    "LabLoss (normalised, L1)": lambda: LabLoss(),
    "ColorAwareLoss (default, ycbcr)": lambda: ColorAwareLoss(),
    "ColorAwareLoss, hue term off": lambda: ColorAwareLoss(hue_weight=0.0),
    "ColorAwareLoss(space='lab')": lambda: ColorAwareLoss(space="lab"),
    "ColorAwareLoss, ΔE00 + SSIM only": lambda: ColorAwareLoss(l1_weight=0.0, chroma_weight=0.0, hue_weight=0.0),
    "ColorAwareLoss(deficit_weight=2)": lambda: ColorAwareLoss(deficit_weight=2.0),
    "L1 + SaturationLoss": lambda: _with(torch.nn.L1Loss(), SaturationLoss(), 1.0),
    "L1 + ConfidenceLoss": lambda: _with(torch.nn.L1Loss(), ConfidenceLoss(), 1.0),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spreads", type=float, nargs="+", default=[30.0, 60.0, 90.0])
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = {name: [hue_uncertainty_probe(LOSSES[name](), s).chroma_kept for s in a.spreads] for name in a.losses}
    ref = rows.get("L1 (sRGB)") or [hue_uncertainty_probe(torch.nn.L1Loss(), s).chroma_kept for s in a.spreads]
    head = " | ".join(f"±{s:g}°" for s in a.spreads)
    print(f"| loss | chroma kept {head} | / L1's {head} |")
    print("|---|" + "---|" * (2 * len(a.spreads)))
    for name, v in rows.items():
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " | "
              + " | ".join(f"{x / r:.2f}" for x, r in zip(v, ref)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
