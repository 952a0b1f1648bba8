"""Trainer overhead: colorfid's training step vs a bare forward + backward + optimiser step.

    python bench/bench_train.py            # CPU: NAFNet width 16, batch 4, 64x64 crops
    python bench/bench_train.py --quick    # fewer repetitions
    python bench/bench_train.py --gpu      # CUDA: width 32, batch 8, 256 crops, fp32 vs bf16+channels_last
    python bench/bench_train.py --threads 2

Both sides run in one process on the same network (same initial weights), the same batch and the
same optimiser (AdamW) and loss (L1). The bare step is::

    opt.zero_grad(set_to_none=True); loss = l1(net(lq), gt); loss.backward(); opt.step()

The trainer step is :meth:`colorfid.train.Trainer.train_step` (learning-rate schedule, loss
components, gradient norm, non-finite guard, scheduler, counters; EMA and clipping off, as in
the bare step). Timing alternates single steps of the two (A B B A ...) so load changes on a shared
machine hit both alike; the table reports, in wall-clock time and in this process's CPU time (the
steadier measure when other processes compete for the cores), the median step times, their ratio
and the median of the per-pair ratios. The target is ratio <= 1.05. A last row gives the trainer's full-loop it/s
(DataLoader included) for reference.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_data(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for side in ("gt", "lq"):
        (root / side).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(gt).save(root / "gt" / f"{i}.png")
        Image.fromarray((gt * 0.8).astype(np.uint8)).save(root / "lq" / f"{i}.png")


def _trainer(root: Path, *, width: int, enc: list[int], batch: int, crop: int, device: str, amp: str,
             channels_last: bool | str, total: int, workers: int):
    from colorfid.train import Trainer, parse_options

    raw = {
        "name": "bench",
        "manual_seed": 0,
        "datasets": {"train": {"dataroot_gt": str(root / "gt"), "dataroot_lq": str(root / "lq"), "gt_size": crop,
                               "batch_size_per_gpu": batch, "num_worker_per_gpu": workers,
                               "dataset_enlarge_ratio": 50}},
        "network_g": {"type": "NAFNet", "width": width, "enc_blk_nums": enc, "middle_blk_num": 1,
                      "dec_blk_nums": [1] * len(enc)},
        "path": {"experiments_root": str(root / "exp")},
        "train": {"optim_g": {"type": "AdamW", "lr": 1e-4}, "total_iter": total, "pixel_opt": {"type": "L1Loss"},
                  "amp": amp, "channels_last": channels_last},
        "logger": {"print_freq": 10**6, "save_checkpoint_freq": 10**6},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(parse_options(raw), device=device, progress=False)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _block(fn, n: int, device: str, clock=time.perf_counter) -> float:
    _sync(device)
    t0 = clock()
    for _ in range(n):
        fn()
    _sync(device)
    return (clock() - t0) / n


def bench_overhead(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    from colorfid.train.trainer import L1Loss

    width, enc, batch, crop = 16, [1, 1, 1, 1], 4, 64
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, 8, 96)
        tr = _trainer(root, width=width, enc=enc, batch=batch, crop=crop, device="cpu", amp="off",
                      channels_last=False, total=10**6, workers=0)
        batch_ = tr._next_batch()
        net = copy.deepcopy(tr.net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        l1 = L1Loss()
        lq, gt = batch_["lq"], batch_["gt"]

        def bare() -> None:
            opt.zero_grad(set_to_none=True)
            loss = l1(net(lq), gt)
            loss.backward()
            opt.step()

        def ours() -> None:
            tr.train_step(batch_)

        reps = args.reps or (30 if args.quick else 120)
        for _ in range(3):  # warm-up both
            _block(bare, 2, "cpu")
            _block(ours, 2, "cpu")
        for clock, what in ((time.perf_counter, "wall"), (time.process_time, "CPU")):
            tb, to, ratios = [], [], []
            for i in range(reps):  # single steps, alternating which goes first
                if i % 2 == 0:
                    a = _block(bare, 1, "cpu", clock)
                    b = _block(ours, 1, "cpu", clock)
                else:
                    b = _block(ours, 1, "cpu", clock)
                    a = _block(bare, 1, "cpu", clock)
                tb.append(a)
                to.append(b)
                ratios.append(b / a if a > 0 else float("nan"))
            mb, mo = statistics.median(tb), statistics.median(to)
            rows.append((f"bare forward+backward+AdamW step ({what}, median)", mb * 1e3, "ms/step"))
            rows.append((f"colorfid Trainer.train_step ({what}, median)", mo * 1e3, "ms/step"))
            rows.append((f"ratio trainer / bare ({what}, ratio of medians)", mo / mb, "x  (target <= 1.05)"))
            rows.append((f"ratio trainer / bare ({what}, median of pair ratios)", statistics.median(ratios), "x"))
        # full loop with data loading, for reference
        loop = _trainer(root, width=width, enc=enc, batch=batch, crop=crop, device="cpu", amp="off",
                        channels_last=False, total=(12 if args.quick else 30), workers=0)
        t0 = time.perf_counter()
        loop.train()
        rows.append(("Trainer.train() full loop incl. data", loop.total_iter / (time.perf_counter() - t0), "it/s"))
    return rows


def bench_gpu(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    if not torch.cuda.is_available():
        print("--gpu: CUDA is not available here; skipped", file=sys.stderr)
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, 16, 320)
        for label, amp, cl in (("fp32", "off", False), ("bf16 + channels_last", "bf16", True)):
            tr = _trainer(root, width=32, enc=[2, 2, 4, 8], batch=8, crop=256, device="cuda", amp=amp,
                          channels_last=cl, total=10**6, workers=0)
            b = tr._next_batch()
            b = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in b.items()}
            _block(lambda: tr.train_step(b), 5, "cuda")
            n = 10 if args.quick else 40
            dt = _block(lambda: tr.train_step(b), n, "cuda")
            rows.append((f"NAFNet-32 [2,2,4,8] batch 8 @256 {label}", 1.0 / dt, "it/s"))
            del tr
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--gpu", action="store_true", help="also the CUDA it/s table (fp32 vs bf16 + channels_last)")
    p.add_argument("--reps", type=int, default=None, help="step pairs timed (default 120; --quick 30)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: stable on a shared machine; the ratio is what counts)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          "NAFNet width 16 enc [1,1,1,1], batch 4, 64x64, AdamW, L1, CPU")
    rows = bench_overhead(args)
    if args.gpu:
        rows += bench_gpu(args)
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)}  {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name.ljust(w)}  {value:10.3f}  {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
