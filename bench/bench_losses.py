"""Benchmark: forward + backward of colorfid's ColorAwareLoss vs plain L1, pytorch-msssim, and a
NAFNet training step, on one batch, in one process. Prints a table with ratios.

    python bench/bench_losses.py            # 8 x 3 x 256 x 256, as in the issue
    python bench/bench_losses.py --quick    # 2 x 3 x 128 x 128, one repeat

Each row times ``loss(pred, target).backward()`` (pred a leaf that requires grad) — the cost a
loss adds to a training step. One warm-up round over all rows, then ``--repeat`` round-robin
rounds; the best time of each row is shown (round-robin spreads background load evenly).
The model row is one forward + backward of NAFNet width 16 (colorfid.models.nafnet.NAFNet with
the SIDD block layout enc [2, 2, 4, 8], middle 12, dec [2, 2, 2, 2]; a stand-in conv net if
NAFNet is not importable) on the same batch, with an L1 loss. The goal of the issue: the full
colour loss costs <= 10 % of the model's step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colorfid.losses import ColorAwareLoss  # noqa: E402
from colorfid.testing import synthetic_pairs  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rows(rows: list[tuple[str, Callable[[], torch.Tensor]]], device: torch.device, repeat: int) -> list[tuple[str, float]]:
    """Best wall time (s) of fn().backward() per row: one warm-up round over every row, then
    ``repeat`` round-robin rounds (so background load spreads evenly over the rows)."""

    def once(fn: Callable[[], torch.Tensor]) -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn().backward()
        _sync(device)
        return time.perf_counter() - t0

    for _, fn in rows:
        once(fn)
    best = [float("inf")] * len(rows)
    for _ in range(repeat):
        for i, (_, fn) in enumerate(rows):
            best[i] = min(best[i], once(fn))
    return [(name, t) for (name, _), t in zip(rows, best)]


def make_model(device: torch.device) -> tuple[nn.Module, str]:
    try:
        from colorfid.models.nafnet import NAFNet

        net = NAFNet(img_channel=3, width=16, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8], dec_blk_nums=[2, 2, 2, 2])
        name = "NAFNet w16 (SIDD layout) fwd+bwd"
    except Exception as exc:  # pragma: no cover - before the model lands
        print(f"note: colorfid.models.nafnet.NAFNet unavailable ({exc}); using a stand-in conv net")
        net = nn.Sequential(*[m for _ in range(8) for m in (nn.Conv2d(16, 16, 3, padding=1), nn.GELU())])
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), net, nn.Conv2d(16, 3, 3, padding=1))
        name = "stand-in conv net fwd+bwd"
    return net.to(device).train(), name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 x 3 x 128 x 128, one repeat")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--no-model", action="store_true", help="skip the NAFNet row")
    args = ap.parse_args(argv)

    batch = args.batch or (2 if args.quick else 8)
    size = args.size or (128 if args.quick else 256)
    repeat = args.repeat or (1 if args.quick else 3)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)

    before, after = synthetic_pairs(batch, size, seed=0)
    target = after.to(device)
    base = before.to(device)

    def leaf() -> torch.Tensor:
        return base.clone().requires_grad_(True)

    todo: list[tuple[str, Callable[[], torch.Tensor]]] = []

    def add(name: str, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        todo.append((name, lambda: loss(leaf(), target)))

    add("L1 (torch.nn.L1Loss)", nn.L1Loss())
    try:
        import pytorch_msssim

        add("SSIM (pytorch-msssim)", lambda p, t: 1 - pytorch_msssim.ssim(p, t, data_range=1.0))
        if size >= 161:
            add("MS-SSIM (pytorch-msssim)", lambda p, t: 1 - pytorch_msssim.ms_ssim(p, t, data_range=1.0))
    except ImportError:
        print("note: pytorch-msssim not installed; its rows are skipped")
    for term in ColorAwareLoss.TERMS:
        w = {f"{k}_weight": (1.0 if k == term else 0.0) for k in ColorAwareLoss.TERMS}
        add(f"  colorfid term {term}", ColorAwareLoss(high_chroma_weight=0.0, **w))
    add("ColorAwareLoss (all terms, SSIM)", ColorAwareLoss())
    if size >= 161:
        add("ColorAwareLoss (all terms, MS-SSIM)", ColorAwareLoss(ssim_kind="ms_ssim"))

    model_name = None
    if not args.no_model:
        net, model_name = make_model(device)
        l1 = nn.L1Loss()
        inp = base.clone()
        todo.append((model_name, lambda: l1(net(inp), target)))
    rows = time_rows(todo, device, repeat)
    model_t = dict(rows)[model_name] if model_name else None

    l1_t = rows[0][1]
    print(f"\ncolorfid loss benchmark: batch {batch}x3x{size}x{size}, device {device}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, best of {repeat}")
    head = f"{'fwd+bwd':<40}{'ms':>10}{'x L1':>10}" + (f"{'% of model step':>18}" if model_t else "")
    print(head)
    print("-" * len(head))
    for name, t in rows:
        line = f"{name:<40}{1e3 * t:>10.1f}{t / l1_t:>10.1f}"
        if model_t:
            line += f"{100 * t / model_t:>17.1f}%"
        print(line)
    if model_t:
        full = dict(rows)["ColorAwareLoss (all terms, SSIM)"]
        verdict = "meets" if full <= 0.10 * model_t else "misses"
        print(f"\nColorAwareLoss (all terms) = {100 * full / model_t:.1f}% of one NAFNet w16 training step "
              f"({verdict} the <= 10% goal on this device)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
