"""The CUDA paths of colorfid, measured in one run (issue #21).

    python bench/bench_gpu.py                       # on a CUDA machine: the whole table
    python bench/bench_gpu.py --json gpu.json       # ... and every row as JSON (written after each section)
    python bench/bench_gpu.py --quick               # small sizes, few repetitions
    python bench/bench_gpu.py --sections b,c        # some sections only
    python bench/bench_gpu.py --compile-loss        # (c) also the loss under torch.compile (bench only)

(a) ΔE00 (``delta_e_2000`` eager and ``fused=True``, which is Triton on CUDA) and sRGB -> Lab
    (``srgb_to_lab``) at 24 MP (6000 x 4000) in float32 and float64, next to a device copy of
    the same input bytes (``dst.copy_(src)``: the memory-bandwidth bound), and the plane formula
    ``difference.ciede2000`` in one pass over the whole planes (no chunks).
(b) ``image_metrics`` at 12 MP (4000 x 3000, float64) on the device and on the CPU, and the
    largest relative difference between the two over every key (target <= 1e-9).
(c) NAFNet width 32 (the published SIDD configuration: middle 12, enc [2, 2, 4, 8], dec
    [2, 2, 2, 2]), batch 8, 256 x 256, AdamW: one training step (forward, loss, backward,
    optimiser) with L1 and with ``ColorAwareLoss()``, in float32, bf16 and fp16 autocast
    (channels_last on CUDA, as the trainer; fp16 with a GradScaler); the loss's forward +
    backward alone on the same network outputs, and its share of the ColorAwareLoss step
    (target: <= 10 % in bf16); the loss's aten op count per forward + backward.
(d) ``Trainer.train_step`` vs a bare step (same network, weights, batch, AdamW, L1; bf16
    autocast + channels_last, what the trainer picks on CUDA), alternating single steps.
(e) ``colorfid demo`` (``colorfid.demo.run_demo``, what ``colorfid demo --device X`` calls) on
    the device and on the CPU: the verdict of every set x metric of every model must be equal.

Timing: warm-ups, then the median of N; on CUDA each repetition is bracketed by CUDA events and
ends with a synchronize. Without CUDA every CUDA row says "skipped: no CUDA device
(torch.cuda.is_available() is False)" and the CPU side of (a)-(d) runs at small size, labelled
"cpu exercise", so the script stays working (tests/test_bench_gpu.py runs ``--quick`` that way).
Needs only torch and colorfid (no colour-science, scikit-image or kornia).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train's make_data

NO_CUDA = "skipped: no CUDA device (torch.cuda.is_available() is False)"
SECTIONS = "abcde"
SIDD32 = {"img_channel": 3, "width": 32, "middle_blk_num": 12, "enc_blk_nums": [2, 2, 4, 8],
          "dec_blk_nums": [2, 2, 2, 2]}
TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


@dataclass
class Row:
    section: str
    name: str
    value: float | None = None
    unit: str = ""
    note: str = ""
    device: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []
        self.errors = 0
        self.later: list[Callable[[], None]] = []
        self.cuda = torch.cuda.is_available()
        self.dev = torch.device(args.device) if self.cuda else None

    # -- output ------------------------------------------------------------------------------
    def add(self, section: str, name: str, value: float | None = None, unit: str = "", note: str = "",
            device: str = "") -> None:
        row = Row(section, name, None if value is None else float(value), unit, note, device)
        self.rows.append(row)
        v = "" if value is None else _num(value)
        dev = f"[{device}] " if device else ""
        print(f"  ({section}) {dev}{name:<62} {v:>12} {unit:<10} {note}".rstrip(), flush=True)

    def skip(self, section: str, name: str, reason: str = NO_CUDA) -> None:
        self.add(section, name, note=reason, device="cuda")

    def meta(self) -> dict[str, Any]:
        try:
            import triton

            triton_v = triton.__version__
        except Exception:  # noqa: BLE001 - any import failure means "not usable here"
            triton_v = None
        import colorfid

        m: dict[str, Any] = {
            "bench": "bench/bench_gpu.py", "argv": sys.argv[1:], "quick": self.args.quick,
            "python": platform.python_version(), "torch": torch.__version__, "triton": triton_v,
            "colorfid": getattr(colorfid, "__version__", None), "cuda_available": self.cuda,
            "torch_cuda": torch.version.cuda, "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(), "cpu": platform.processor() or None,
        }
        try:
            m["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                             cwd=Path(__file__).resolve().parents[1], timeout=10).stdout.strip() or None
        except Exception:  # noqa: BLE001
            m["git_commit"] = None
        if self.cuda:
            p = torch.cuda.get_device_properties(self.dev)
            m.update({
                "device_name": torch.cuda.get_device_name(self.dev),
                "device_memory_gib": round(p.total_memory / 2**30, 1),
                "device_capability": f"{p.major}.{p.minor}",
                "cudnn": torch.backends.cudnn.version(),
                "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
            })
        else:
            m["device_name"] = None
        return m

    def write_json(self, meta: dict[str, Any]) -> None:
        if not self.args.json:
            return
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in self.rows]}, indent=1, default=str))
        os.replace(tmp, path)


def _num(v: float) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 1:
        return f"{v:.3f}"
    if a >= 1e-3:
        return f"{v:.4f}"
    return f"{v:.3e}"


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def once(fn: Callable[[], Any], dev: torch.device) -> float:
    """Seconds of one call: CUDA events around it (then a synchronize), or the wall clock."""
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(fn: Callable[[], Any], dev: torch.device, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync(dev)
    return statistics.median(once(fn, dev) for _ in range(reps))


@contextlib.contextmanager
def peak_memory(dev: torch.device, out: dict[str, float]) -> Iterator[None]:
    """``out["peak_mib"]``: the CUDA allocator's peak above what was allocated on entry."""
    if dev.type != "cuda":
        yield
        return
    sync(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    yield
    sync(dev)
    out["peak_mib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20


def free(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------
# (a) ΔE00 and sRGB -> Lab at 24 MP
# ------------------------------------------------------------------------------------------------


def section_a(b: Bench) -> None:
    q = b.args.quick
    runs: list[tuple[torch.device, tuple[int, int], str]] = []
    if b.cuda:
        runs.append((b.dev, (1000, 1500) if q else (4000, 6000), "cuda"))
    else:
        for dtype in ("float32", "float64"):
            for what in ("device copy of ΔE00's input bytes", "ΔE00 eager (delta_e_2000)",
                         "ΔE00 fused=True (Triton)", "sRGB -> Lab (srgb_to_lab)"):
                b.skip("a", f"24 MP {dtype}: {what}")
        runs.append((torch.device("cpu"), (128, 192), "cpu exercise"))
    for dev, (h, w), label in runs:
        _section_a_on(b, dev, h, w, label)


def _section_a_on(b: Bench, dev: torch.device, h: int, w: int, label: str) -> None:
    from colorfid.color import srgb_to_lab
    from colorfid.difference import ciede2000, delta_e_2000

    cuda = dev.type == "cuda"
    reps, warm = (2, 1) if not cuda else (3, 1) if b.args.quick else (b.args.reps or 10, 2)
    mp = f"{h * w / 1e6:.3g} MP"
    n = h * w
    for dtype in (torch.float32, torch.float64):
        dn = str(dtype).replace("torch.", "")
        size = torch.finfo(dtype).bits // 8
        g = torch.Generator(device=dev).manual_seed(0)
        x1 = torch.rand(3, h, w, generator=g, device=dev, dtype=dtype)
        x2 = (x1 + 0.05 * torch.randn(3, h, w, generator=g, device=dev, dtype=dtype)).clamp_(0.0, 1.0)
        lab1, lab2 = srgb_to_lab(x1), srgb_to_lab(x2)

        # bandwidth bound: a device copy of the bytes ΔE00 reads (two 3-channel inputs)
        src = torch.empty(2 * 3 * n, device=dev, dtype=dtype).uniform_()
        dst = torch.empty_like(src)
        t_copy = median_time(lambda: dst.copy_(src), dev, reps, warm)
        moved = 2 * src.numel() * size  # read + write
        b.add("a", f"{mp} {dn}: device copy of ΔE00's input bytes (2 x 3 x N)", t_copy * 1e3, "ms",
              f"{moved / t_copy / 1e9:.0f} GB/s read+write", label)
        del src, dst

        mem: dict[str, float] = {}
        with peak_memory(dev, mem):
            ref = delta_e_2000(lab1, lab2)
        t = median_time(lambda: delta_e_2000(lab1, lab2), dev, reps, warm)
        b.add("a", f"{mp} {dn}: ΔE00 eager (delta_e_2000)", t * 1e3, "ms",
              f"{n / t / 1e6:.0f} MP/s, {t / t_copy:.2f}x the copy"
              + (f", peak +{mem['peak_mib']:.0f} MiB" if mem else ""),
              label)
        planes = (*lab1.unbind(0), *lab2.unbind(0))
        with torch.no_grad():
            t = median_time(lambda: ciede2000(*planes, 1.0, 1.0, 1.0), dev, reps, warm)
        b.add("a", f"{mp} {dn}: ΔE00 eager, one pass over whole planes (ciede2000)", t * 1e3, "ms",
              f"{n / t / 1e6:.0f} MP/s, {t / t_copy:.2f}x the copy", label)

        if cuda or b.args.cpu_fused:
            disabled = os.environ.get("COLORFID_DISABLE_FUSED") == "1"
            what = "ΔE00 fused=True" + (" (Triton)" if cuda else " (Inductor C++)")
            try:  # a toolchain that cannot compile must not hide the rows after this one
                t0 = time.perf_counter()
                fused = delta_e_2000(lab1, lab2, fused=True)
                sync(dev)
                first = time.perf_counter() - t0
                t = median_time(lambda: delta_e_2000(lab1, lab2, fused=True), dev, reps, warm)
                diff = float((fused - ref).abs().max())
                del fused
            except Exception as exc:  # noqa: BLE001 - report, keep going
                b.errors += 1
                b.add("a", f"{mp} {dn}: {what}", note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                      device=label)
            else:
                b.add("a", f"{mp} {dn}: {what}", t * 1e3, "ms",
                      f"{n / t / 1e6:.0f} MP/s, {t / t_copy:.2f}x the copy; first call (compile) {first:.1f} s; "
                      f"max |fused - eager| {diff:.2e}"
                      + ("; COLORFID_DISABLE_FUSED=1: this ran eager" if disabled else ""),
                      label)
        else:
            b.add("a", f"{mp} {dn}: ΔE00 fused=True", note="skipped on the CPU: torch.compile takes ~80 s per dtype "
                  "here (bench_color.py measures it; --cpu-fused runs it)", device=label)
        del ref

        # sRGB -> Lab: the bytes it reads are one 3-channel image
        src = torch.empty(3 * n, device=dev, dtype=dtype).uniform_()
        dst = torch.empty_like(src)
        t_copy3 = median_time(lambda: dst.copy_(src), dev, reps, warm)
        del src, dst
        t = median_time(lambda: srgb_to_lab(x1), dev, reps, warm)
        b.add("a", f"{mp} {dn}: sRGB -> Lab (srgb_to_lab)", t * 1e3, "ms",
              f"{n / t / 1e6:.0f} MP/s, {t / t_copy3:.2f}x a copy of its input ({t_copy3 * 1e3:.2f} ms)", label)
        del x1, x2, lab1, lab2, planes
        free(dev)


# ------------------------------------------------------------------------------------------------
# (b) image_metrics at 12 MP, device vs CPU
# ------------------------------------------------------------------------------------------------


def metric_pair(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (prediction, ground truth) pair of float32 sRGB images (3, h, w): smooth colour fields
    with saturated regions; the prediction is washed out, shifted in hue a little and noisy
    (slightly out of [0, 1] in places, as network outputs are)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 9, 12, generator=g)
    gt = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0].clamp_(0.0, 1.0)
    y = (0.299 * gt[0] + 0.587 * gt[1] + 0.114 * gt[2])[None]
    pred = y + 0.8 * (gt - y)
    pred = pred[[0, 2, 1]] * 0.05 + pred * 0.95
    pred = pred + 0.01 * torch.randn(3, h, w, generator=g)
    return pred.float().contiguous(), gt.float().contiguous()


def rel_diff(a: dict[str, float], b: dict[str, float]) -> tuple[float, str]:
    """Largest relative difference over the keys of two metric dicts (NaN == NaN), and its key."""
    worst, key = 0.0, ""
    for k in a:
        x, y = float(a[k]), float(b[k])
        if math.isnan(x) and math.isnan(y):
            continue
        if math.isnan(x) or math.isnan(y):
            return math.inf, k
        if x == y:
            continue
        d = abs(x - y) / max(abs(x), abs(y))
        if d > worst:
            worst, key = d, k
    return worst, key


def section_b(b: Bench) -> None:
    from colorfid.metrics import image_metrics, metric_kernels

    q = b.args.quick
    if b.cuda:
        h, w = (1000, 1000) if q else (3000, 4000)
    else:
        h, w = 128, 160
    mp = f"{h * w / 1e6:.3g} MP"
    pred, gt = metric_pair(h, w)
    cpu = torch.device("cpu")
    reps = 1 if q or not b.cuda else 3
    cpu_vals = image_metrics(pred, gt)
    t_cpu = median_time(lambda: image_metrics(pred, gt), cpu, reps, 0)
    label = "cpu" if b.cuda else "cpu exercise"
    b.add("b", f"{mp} image_metrics float64 on the CPU", t_cpu * 1e3, "ms",
          f"{len(cpu_vals)} keys, {torch.get_num_threads()} threads, {metric_kernels()} path", label)
    if not b.cuda:
        b.skip("b", "12 MP image_metrics float64 on CUDA")
        b.skip("b", "largest relative difference CUDA vs CPU over every key (target <= 1e-9)")
        return
    dev = b.dev
    pd, gd = pred.to(dev), gt.to(dev)
    dev_vals = image_metrics(pd, gd)
    t_dev = median_time(lambda: image_metrics(pd, gd), dev, b.args.reps or 5, 1)
    b.add("b", f"{mp} image_metrics float64 on CUDA", t_dev * 1e3, "ms", f"{t_cpu / t_dev:.1f}x the CPU", "cuda")
    worst, key = rel_diff(cpu_vals, dev_vals)
    ok = "meets" if worst <= 1e-9 else "MISSES"
    b.add("b", "largest relative difference CUDA vs CPU over every key", worst, "rel",
          f"at {key or '-'} ({cpu_vals.get(key)!r} vs {dev_vals.get(key)!r}); {ok} the 1e-9 target", "cuda")
    del pd, gd
    free(dev)


# ------------------------------------------------------------------------------------------------
# (c) NAFNet-w32 training step: L1 vs ColorAwareLoss, fp32 / bf16 / fp16 autocast
# ------------------------------------------------------------------------------------------------


def loss_op_counts(loss: torch.nn.Module, dev: torch.device, n: int = 2, size: int = 64) -> dict[str, int]:
    """aten operators dispatched by one forward and one backward of ``loss`` (views excluded:
    each remaining op is about one kernel launch on a GPU), and host synchronisations."""
    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "_unsafe_view", "as_strided", "unbind", "select", "slice", "expand", "permute", "t",
             "transpose", "alias", "unsqueeze", "squeeze", "detach", "_reshape_alias", "split", "narrow",
             "lift_fresh", "promote_types"}

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = self.syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            name = func.overloadpacket.__name__
            if name == "_local_scalar_dense":
                self.syncs += 1
            elif name not in views:
                self.ops += 1
            return func(*args, **(kwargs or {}))

    g = torch.Generator(device=dev).manual_seed(0)
    t = torch.rand(n, 3, size, size, generator=g, device=dev)
    p = torch.rand(n, 3, size, size, generator=g, device=dev).requires_grad_()
    loss(p, t).backward()  # constants made once
    with Count() as fw:
        v = loss(p, t)
    with Count() as bw:
        v.backward()
    return {"forward": fw.ops, "backward": bw.ops, "syncs": fw.syncs + bw.syncs}


def section_c(b: Bench) -> None:
    from colorfid.losses import ColorAwareLoss

    cpu = torch.device("cpu")
    oc = loss_op_counts(ColorAwareLoss(), b.dev or cpu)
    b.add("c", "ColorAwareLoss() aten ops per forward + backward (views excluded)", oc["forward"] + oc["backward"],
          "ops", f"forward {oc['forward']}, backward {oc['backward']}; {oc['syncs']} host sync(s)",
          "cuda" if b.cuda else "cpu")
    if b.cuda:
        q = b.args.quick
        _section_c_on(b, b.dev, SIDD32, 8 if not q else 2, 256 if not q else 128, ("fp32", "bf16", "fp16"), "cuda",
                      "NAFNet-w32 SIDD")
    else:
        for amp in ("fp32", "bf16", "fp16"):
            for what in ("training step, L1", "training step, ColorAwareLoss", "ColorAwareLoss fwd+bwd alone",
                         "ColorAwareLoss share of the step"):
                b.skip("c", f"NAFNet-w32 SIDD b8 256² {amp}: {what}")
        _section_c_on(b, cpu, TINY, 1, 32, ("fp32", "bf16", "fp16"), "cpu exercise", "NAFNet-w8 [1,1]")


def _section_c_on(b: Bench, dev: torch.device, cfg: dict[str, Any], batch: int, size: int, amps: tuple[str, ...],
                  label: str, net_name: str) -> None:
    from colorfid.losses import ColorAwareLoss
    from colorfid.losses.pixel import L1Loss
    from colorfid.models import NAFNet
    from colorfid.testing import synthetic_pairs

    cuda = dev.type == "cuda"
    reps, warm = (2, 1) if not cuda else (3, 1) if b.args.quick else (b.args.reps or 20, 5)
    lq_cpu, gt_cpu = synthetic_pairs(batch, size, seed=0)
    torch.manual_seed(0)
    base = NAFNet(**cfg)
    tag = f"{net_name} b{batch} {size}²"
    for amp in amps:
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        if amp == "fp16" and not cuda:
            b.add("c", f"{tag} fp16: training steps", note="skipped: fp16 autocast needs CUDA", device=label)
            continue
        net = copy.deepcopy(base).to(dev)
        lq, gt = lq_cpu.to(dev), gt_cpu.to(dev)
        if cuda:  # what the trainer does on CUDA (train.channels_last: auto)
            net = net.to(memory_format=torch.channels_last)
            lq = lq.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
        scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
        l1, color = L1Loss(), ColorAwareLoss()

        def autocast() -> contextlib.AbstractContextManager:
            return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

        def step(loss: torch.nn.Module) -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                pred = net(lq)
            total = loss(pred.float(), gt)  # losses in float32, outside autocast, as the trainer
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()

        mem: dict[str, float] = {}
        with peak_memory(dev, mem):
            step(color)
        t_l1 = median_time(lambda: step(l1), dev, reps, warm)
        t_color = median_time(lambda: step(color), dev, reps, warm)
        with torch.no_grad(), autocast():
            out = net(lq).float()

        def alone(loss: torch.nn.Module) -> Callable[[], None]:
            def run() -> None:
                p = out.detach().requires_grad_()
                loss(p, gt).backward()
            return run

        t_loss = median_time(alone(color), dev, reps, warm)
        t_l1_alone = median_time(alone(l1), dev, reps, warm)
        share = t_loss / t_color
        b.add("c", f"{tag} {amp}: training step, L1", t_l1 * 1e3, "ms", f"{1 / t_l1:.2f} it/s", label)
        b.add("c", f"{tag} {amp}: training step, ColorAwareLoss", t_color * 1e3, "ms",
              f"{t_color / t_l1:.3f}x the L1 step" + (f"; peak {mem['peak_mib']:.0f} MiB" if mem else ""), label)
        b.add("c", f"{tag} {amp}: ColorAwareLoss fwd+bwd alone (same outputs)", t_loss * 1e3, "ms",
              f"L1 fwd+bwd alone {t_l1_alone * 1e3:.3f} ms", label)
        goal = ""
        if amp == "bf16" and net_name.startswith("NAFNet-w32") and batch == 8 and size == 256:
            goal = f"; {'meets' if share <= 0.10 else 'MISSES'} the <= 10 % goal"
        b.add("c", f"{tag} {amp}: ColorAwareLoss share of the step", 100 * share, "%",
              f"(ColorAwareLoss step - L1 step) / ColorAwareLoss step = {100 * (t_color - t_l1) / t_color:.1f} %{goal}",
              label)
        if b.args.compile_loss and amp == "bf16":  # measured after (e): its compile may take minutes
            b.later.append(lambda out=out, gt=gt, color=color, t=t_color: _compiled_loss_row(
                b, dev, out, gt, color, t, reps, warm, tag, label))
        del net, opt, out, lq, gt
        free(dev)


def _compiled_loss_row(b: Bench, dev: torch.device, out: torch.Tensor, gt: torch.Tensor, color: torch.nn.Module,
                       t_step: float, reps: int, warm: int, tag: str, label: str) -> None:
    """Bench only: the same loss through torch.compile (what fusing it could buy; values equal to
    float rounding, not bit for bit, so not a library path)."""
    compiled = torch.compile(color)

    def run() -> None:
        p = out.detach().requires_grad_()
        compiled(p, gt).backward()

    try:
        t0 = time.perf_counter()
        run()
        sync(dev)
        first = time.perf_counter() - t0
        t = median_time(run, dev, reps, warm)
        p1 = out.detach().requires_grad_()
        p2 = out.detach().requires_grad_()
        v1, v2 = color(p1, gt), compiled(p2, gt)
        v1.backward()
        v2.backward()
        dv = abs(float(v1) - float(v2)) / max(abs(float(v1)), 1e-30)
        dg = float((p1.grad - p2.grad).abs().max() / p1.grad.abs().max().clamp_min(1e-30))
        b.add("c", f"{tag} bf16: ColorAwareLoss fwd+bwd under torch.compile (bench only)", t * 1e3, "ms",
              f"{100 * t / t_step:.1f} % of the eager-loss step; compile {first:.0f} s; value rel diff {dv:.1e}, "
              f"grad max rel diff {dg:.1e}", label)
    except Exception as exc:  # noqa: BLE001 - report, keep going
        b.add("c", f"{tag} bf16: ColorAwareLoss under torch.compile (bench only)",
              note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", device=label)


# ------------------------------------------------------------------------------------------------
# (d) Trainer.train_step vs a bare step
# ------------------------------------------------------------------------------------------------


def section_d(b: Bench) -> None:
    if b.cuda:
        q = b.args.quick
        _section_d_on(b, b.dev, SIDD32, 2 if q else 8, 128 if q else 256, "cuda", "NAFNet-w32 SIDD")
    else:
        b.skip("d", "NAFNet-w32 SIDD b8 256² bf16: Trainer.train_step / bare step")
        _section_d_on(b, torch.device("cpu"), TINY, 1, 32, "cpu exercise", "NAFNet-w8 [1,1]")


def _section_d_on(b: Bench, dev: torch.device, cfg: dict[str, Any], batch: int, crop: int, label: str,
                  net_name: str) -> None:
    from colorfid.losses.pixel import L1Loss
    from colorfid.train import Trainer, parse_options

    cuda = dev.type == "cuda"
    reps = 2 if not cuda else 4 if b.args.quick else (b.args.reps or 30)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from bench_train import make_data  # same folder: the same random training pairs

        make_data(root, 2 * batch, crop + 32)
        net_opts = {"type": "NAFNet", **{k: v for k, v in cfg.items() if k != "img_channel"}}
        raw = {
            "name": "bench_gpu", "manual_seed": 0,
            "datasets": {"train": {"dataroot_gt": str(root / "gt"), "dataroot_lq": str(root / "lq"), "gt_size": crop,
                                   "batch_size_per_gpu": batch, "num_worker_per_gpu": 0, "dataset_enlarge_ratio": 10}},
            "network_g": net_opts,
            "path": {"experiments_root": str(root / "exp")},
            "train": {"optim_g": {"type": "AdamW", "lr": 1e-4}, "total_iter": 10**6, "pixel_opt": {"type": "L1Loss"}},
            "logger": {"print_freq": 10**6, "save_checkpoint_freq": 10**6},
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = Trainer(parse_options(raw), device=dev, progress=False)
        batch_ = tr._next_batch()
        batch_ = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch_.items()}
        net = copy.deepcopy(tr.net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        l1 = L1Loss()
        amp_dtype, cl = tr.amp_dtype, tr.channels_last
        lq, gt = batch_["lq"], batch_["gt"]

        def bare() -> None:
            x = lq.contiguous(memory_format=torch.channels_last) if cl else lq
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext():
                pred = net(x)
            loss = l1(pred.float(), gt)
            loss.backward()
            opt.step()

        def ours() -> None:
            tr.train_step(batch_)

        for _ in range(1 if not cuda else 5):
            bare()
            ours()
        sync(dev)
        ta, tb, ratios = [], [], []
        for i in range(reps):  # single steps, alternating which goes first
            if i % 2 == 0:
                a = once(bare, dev)
                o = once(ours, dev)
            else:
                o = once(ours, dev)
                a = once(bare, dev)
            ta.append(a)
            tb.append(o)
            ratios.append(o / a)
        ma, mo = statistics.median(ta), statistics.median(tb)
        prec = f"{'bf16' if amp_dtype == torch.bfloat16 else 'fp16' if amp_dtype == torch.float16 else 'fp32'}" \
               f"{' + channels_last' if cl else ''}"
        tag = f"{net_name} b{batch} {crop}² {prec}"
        b.add("d", f"{tag}: bare forward+backward+AdamW step", ma * 1e3, "ms", f"median of {reps}", label)
        b.add("d", f"{tag}: Trainer.train_step", mo * 1e3, "ms", f"median of {reps}", label)
        b.add("d", f"{tag}: Trainer.train_step / bare step", mo / ma, "x",
              f"median of pair ratios {statistics.median(ratios):.3f} (target <= 1.05)", label)
        del tr, net, opt
        free(dev)


# ------------------------------------------------------------------------------------------------
# (e) colorfid demo on the device vs on the CPU
# ------------------------------------------------------------------------------------------------


def _row_key(r: dict[str, Any]) -> tuple[str, str]:
    """(set, metric[:stat]) of a gate row: a metric gated on two statistics is two rows."""
    return r["set"], r["metric"] + (f":{r['stat']}" if r.get("stat") else "")


def demo_verdicts(summary: Any) -> dict[tuple[str, str, str], str]:
    """(model, set, metric[:stat]) -> verdict of a :class:`colorfid.demo.DemoSummary`."""
    out = {}
    for model, gate in summary.gates.items():
        for r in gate.to_dict()["rows"]:
            out[(model, *_row_key(r))] = r["verdict"]
    return out


def compare_demos(cpu: Any, dev: Any) -> tuple[list[str], float, str]:
    """Verdicts that differ (``model/set/metric: cpu -> device``), and the largest relative
    difference of the gated values (with where)."""
    a, b_ = demo_verdicts(cpu), demo_verdicts(dev)
    diffs = [f"{'/'.join(k)}: {a.get(k)} -> {b_.get(k)}" for k in sorted(set(a) | set(b_)) if a.get(k) != b_.get(k)]
    worst, where = 0.0, ""
    for model, gate in cpu.gates.items():
        rows = dev.gates[model].to_dict()["rows"] if model in dev.gates else []
        other = {_row_key(r): r["value"] for r in rows}
        for r in gate.to_dict()["rows"]:
            x, y = r["value"], other.get(_row_key(r))
            if x is None or y is None or x == y or (math.isnan(x) and math.isnan(y)):
                continue
            d = abs(x - y) / max(abs(x), abs(y))
            if d > worst:
                worst, where = d, "/".join((model, *_row_key(r)))
    return diffs, worst, where


def run_demo_on(device: str, out_dir: Path) -> tuple[Any, float, str]:
    from colorfid.demo import run_demo

    buf = io.StringIO()
    t0 = time.perf_counter()
    summary = run_demo(out_dir, device=device, progress=False, stream=buf)
    return summary, time.perf_counter() - t0, buf.getvalue()


def section_e(b: Bench) -> None:
    if not b.cuda:
        b.skip("e", "colorfid demo --device cuda: verdicts equal to the CPU run's")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old = os.environ.get("COLORFID_CACHE")
        os.environ["COLORFID_CACHE"] = str(root / "cache")  # no output cache shared between the runs
        try:
            cpu, t_cpu, _ = run_demo_on("cpu", root / "cpu")
            dev, t_dev, text = run_demo_on(str(b.dev), root / "cuda")
        finally:
            if old is None:
                os.environ.pop("COLORFID_CACHE", None)
            else:
                os.environ["COLORFID_CACHE"] = old
    b.add("e", "colorfid demo on the CPU", t_cpu, "s", "", "cpu")
    b.add("e", "colorfid demo on CUDA", t_dev, "s", f"{t_cpu / t_dev:.2f}x faster than the CPU", "cuda")
    diffs, worst, where = compare_demos(cpu, dev)
    n = len(demo_verdicts(cpu))
    passed = {m: (cpu.gates[m].passed, dev.gates[m].passed) for m in cpu.gates}
    b.add("e", "demo verdicts that differ, CUDA vs CPU (set x metric x model)", len(diffs), "of " + str(n),
          ("EQUAL" if not diffs else "DIFFER: " + "; ".join(diffs[:8])) + " | overall pass cpu/cuda: "
          + ", ".join(f"{m} {p[0]}/{p[1]}" for m, p in passed.items()), "cuda")
    b.add("e", "largest relative difference of a gated value, CUDA vs CPU", worst, "rel", where, "cuda")
    if diffs:
        print(text)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    p.add_argument("--json", metavar="PATH", help="write every row, the device and the versions as JSON")
    p.add_argument("--sections", default=SECTIONS, help="which of a,b,c,d,e to run (default: all)")
    p.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions on CUDA (default: per section)")
    p.add_argument("--compile-loss", action="store_true", help="(c) also ColorAwareLoss under torch.compile, bf16 "
                   "(bench only: what fusing it could buy)")
    p.add_argument("--cpu-fused", action="store_true", help="(a) without CUDA, also run fused=True on the CPU "
                   "(torch.compile, ~80 s per dtype)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [s for s in SECTIONS if s in args.sections.replace(",", "")]
    b = Bench(args)
    meta = b.meta()
    print(f"colorfid bench_gpu: torch {meta['torch']} (CUDA {meta['torch_cuda']}), triton {meta['triton']}, "
          f"device {meta['device_name'] or 'none'}, {meta['cpu_threads']} CPU threads"
          + (" --quick" if args.quick else ""))
    if not b.cuda:
        print(f"  {NO_CUDA}: CUDA rows are listed as skipped; the CPU side runs at small size ('cpu exercise')")
    for s in wanted:
        title = {"a": "ΔE00 and sRGB -> Lab, next to a device copy", "b": "image_metrics, device vs CPU",
                 "c": "NAFNet training step: L1 vs ColorAwareLoss", "d": "Trainer.train_step vs a bare step",
                 "e": "colorfid demo, device vs CPU"}[s]
        print(f"\n({s}) {title}", flush=True)
        t0 = time.perf_counter()
        try:
            {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e}[s](b)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            b.errors += 1
            traceback.print_exc()
            b.add(s, f"section ({s}) failed", note=f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        print(f"  ({s}) took {time.perf_counter() - t0:.1f} s", flush=True)
        b.write_json(meta)
    for job in b.later:
        print("\n(c) continued: ColorAwareLoss under torch.compile (bench only)", flush=True)
        try:
            job()
        except Exception as exc:  # noqa: BLE001
            b.errors += 1
            traceback.print_exc()
            b.add("c", "compiled loss failed", note=f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        b.write_json(meta)
    b.write_json(meta)
    if args.json:
        print(f"\nwrote {args.json}")
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
