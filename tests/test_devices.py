"""colorfid on every device the machine has: each test runs on the CPU and, where a real CUDA
device is there, on CUDA (skipped otherwise, with the reason), comparing the device's result to
the CPU's. On a CPU-only machine the ``cpu`` cases check the tests themselves; on a GPU box they
are the CUDA paths of issue #21: conversions and CIEDE2000 (eager and fused = Triton),
``image_metrics`` (within 1e-9 relative of the CPU, float64), ``ColorAwareLoss`` under bf16 and
fp16 autocast, ``run_model`` with tiles and amp, the trainer's AMP + channels_last step and a
state saved on the GPU resumed on the CPU, and ``evaluate``.

Also here: the device *choice* (``select_device`` prefers cuda > mps > cpu; the trainer takes
the GPU by default), checked on any machine by making torch claim a CUDA device, and the chunk
sizes that differ between the CPU and GPUs (never a value)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _devices import DEVICES, needs_cuda
from PIL import Image

from colorfid import _layout
from colorfid import color as C
from colorfid.difference import delta_e_2000
from colorfid.errors import UsageError
from colorfid.losses import ColorAwareLoss
from colorfid.metrics import image_metrics
from colorfid.models import NAFNet, run_model, select_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _srgb(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _metric_pair(h=72, w=96, seed=0):
    """Smooth colour fields with saturated regions (GT) and a washed-out, noisy prediction."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 5, generator=g, dtype=torch.float64)
    gt = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    y = (0.299 * gt[0] + 0.587 * gt[1] + 0.114 * gt[2])[None]
    pred = y + 0.8 * (gt - y) + 0.01 * torch.randn(3, h, w, generator=g, dtype=torch.float64)
    return pred.float(), gt.float()


def _rel(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b) or a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


# ----------------------------------------------------------------------------------------------
# which device is chosen (any machine)
# ----------------------------------------------------------------------------------------------


def test_select_device_prefers_cuda_when_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device() == torch.device("cuda")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="does not exist"):
        select_device("cuda:1")


def test_chunk_sizes_by_device():
    assert _layout.chunk_pixels(torch.device("cpu")) == _layout.CHUNK
    assert _layout.chunk_pixels(torch.device("cpu"), 123) == 123
    for name in ("cuda", "cuda:1", "mps", "meta"):
        assert _layout.chunk_pixels(torch.device(name)) == _layout.DEVICE_CHUNK > _layout.CHUNK


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_chunk_size_changes_no_value(monkeypatch, dtype):
    """What a GPU runs (chunks of DEVICE_CHUNK pixels: here the whole image in one pass) equals
    the CPU's cache-sized chunks, for the conversions, CIEDE2000 and image_metrics."""
    x = _srgb((3, 300, 310), dtype)  # 93,000 pixels: two CPU chunks
    y = (x + 0.05 * _srgb((3, 300, 310), dtype, seed=1)).clamp(0, 1)
    pred, gt = _metric_pair(300, 310)
    lab_x, lab_y = C.srgb_to_lab(x), C.srgb_to_lab(y)
    de = delta_e_2000(lab_x, lab_y)
    m = image_metrics(pred, gt, fused=False)
    big = lambda device, cpu=_layout.CHUNK: _layout.DEVICE_CHUNK  # noqa: E731
    import colorfid.color
    import colorfid.difference
    import colorfid.metrics.image
    import colorfid.metrics.structural

    for mod in (colorfid.color, colorfid.difference, colorfid.metrics.image, colorfid.metrics.structural):
        monkeypatch.setattr(mod, "chunk_pixels", big)
    lab_x2 = C.srgb_to_lab(x)
    assert torch.equal(lab_x2, lab_x)
    assert torch.equal(delta_e_2000(lab_x2, lab_y), de)
    m2 = image_metrics(pred, gt, fused=False)
    assert max(_rel(m[k], m2[k]) for k in m) <= 1e-12


# ----------------------------------------------------------------------------------------------
# colour maths on the device vs the CPU
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conversions_and_ciede2000_on_device(device, dtype):
    x = _srgb((2, 3, 64, 80), dtype)
    y = (x + 0.03 * _srgb((2, 3, 64, 80), dtype, seed=2) - 0.015).clamp(0, 1)
    lab_ref, de_ref = C.srgb_to_lab(x), delta_e_2000(C.srgb_to_lab(x), C.srgb_to_lab(y))
    xd, yd = x.to(device), y.to(device)
    lab = C.srgb_to_lab(xd)
    assert lab.device.type == device and lab.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(lab.cpu(), lab_ref, rtol=0, atol=tol)
    torch.testing.assert_close(C.lab_to_srgb(lab).cpu(), x, rtol=0, atol=tol)
    torch.testing.assert_close(C.srgb_to_ycbcr(xd).cpu(), C.srgb_to_ycbcr(x), rtol=0, atol=tol)
    torch.testing.assert_close(C.srgb_to_hsv(xd).cpu(), C.srgb_to_hsv(x), rtol=0, atol=tol)
    de = delta_e_2000(lab, C.srgb_to_lab(yd))
    torch.testing.assert_close(de.cpu(), de_ref, rtol=0, atol=1e-9 if dtype == torch.float64 else 1e-4)
    assert float(delta_e_2000(lab, lab).abs().max()) == 0.0
    u8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(C.srgb_uint8_to_lab(u8.to(device)).cpu(), C.srgb_uint8_to_lab(u8), rtol=0, atol=2e-4)


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_ciede2000_on_cuda_is_the_eager_formula(dtype):
    """delta_e_2000(fused=True) on CUDA: torch.compile's Triton kernel, chunked and padded."""
    x = _srgb((3, 700, 500), dtype, seed=3).cuda()  # 350,000 pixels: two fused chunks, one padded
    y = (x + 0.05 * _srgb((3, 700, 500), dtype, seed=4).cuda()).clamp(0, 1)
    a, b = C.srgb_to_lab(x), C.srgb_to_lab(y)
    eager = delta_e_2000(a, b)
    fused = delta_e_2000(a, b, fused=True)
    assert fused.device.type == "cuda" and fused.shape == eager.shape
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(fused, eager, rtol=0, atol=tol)
    hwc = a.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels innermost: the de-interleave path
    torch.testing.assert_close(delta_e_2000(hwc, b, fused=True), eager, rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_image_metrics_on_device_match_the_cpu(device):
    """Issue #21's figure: CUDA vs CPU image_metrics within 1e-9 relative (float64)."""
    pred, gt = _metric_pair()
    ref = image_metrics(pred, gt, fused=False)
    got = image_metrics(pred.to(device), gt.to(device))
    assert got.keys() == ref.keys()
    worst = max(_rel(ref[k], got[k]) for k in ref)
    assert worst <= 1e-9, {k: (ref[k], got[k]) for k in ref if _rel(ref[k], got[k]) > 1e-9}


# ----------------------------------------------------------------------------------------------
# the loss on the device, under autocast
# ----------------------------------------------------------------------------------------------


def _loss_pair(device, n=4, size=48):
    g = torch.Generator().manual_seed(5)
    t = torch.rand(n, 3, size, size, generator=g)
    t[0, :, : size // 2] = torch.tensor([0.1, 0.3, 0.9])[:, None, None]
    p = (t + 0.2 * torch.randn(n, 3, size, size, generator=g)).clamp(-0.05, 1.05)
    return p.to(device), t.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", [{}, {"deficit_weight": 1.0, "space": "lab"}], ids=["default", "lab_deficit"])
def test_color_aware_loss_on_device(device, cfg):
    p_cpu, t_cpu = _loss_pair("cpu")
    loss = ColorAwareLoss(**cfg)
    pc = p_cpu.clone().requires_grad_()
    ref = loss(pc, t_cpu)
    ref.backward()
    p, t = _loss_pair(device)
    pd = p.clone().requires_grad_()
    v = loss(pd, t)
    v.backward()
    assert v.device.type == device and v.dtype == torch.float32
    torch.testing.assert_close(v.cpu(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pd.grad.cpu(), pc.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_color_aware_loss_under_autocast_on_device(device, amp):
    if amp == "fp16" and device == "cpu":
        pytest.skip("float16 autocast is a CUDA mode (tests/test_losses.py runs bf16 on the CPU)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    p, t = _loss_pair(device)
    leaf = p.clone().requires_grad_()
    with torch.autocast(device, dtype=dtype):
        x = leaf.to(dtype)  # what a network under autocast hands the loss
        v = ColorAwareLoss(deficit_weight=1.0)(x, t)
    v.backward()
    assert v.dtype == torch.float32 and torch.isfinite(v) and torch.isfinite(leaf.grad).all()
    ref = ColorAwareLoss(deficit_weight=1.0)(x.detach().float(), t)  # float32 maths on the same rounded input
    torch.testing.assert_close(v.detach(), ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# inference, training, evaluation on the device
# ----------------------------------------------------------------------------------------------


def _small_nafnet(seed=0):
    torch.manual_seed(seed)
    net = NAFNet(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])
    with torch.no_grad():  # a non-trivial random network (NAFNet's beta/gamma start at 0)
        for name, prm in net.named_parameters():
            if name.endswith(("beta", "gamma")):
                prm.normal_(0.0, 0.1)
    return net.eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", [None, True], ids=["fp32", "amp"])
def test_run_model_tiled_on_device(device, amp):
    x = _srgb((3, 100, 120), torch.float32, seed=6)
    net = _small_nafnet()
    ref = run_model(_small_nafnet(), x, tile=48, overlap=16, device="cpu")
    if amp and device == "cpu":
        with pytest.warns(Warning, match="autocast"):
            out = run_model(net, x, tile=48, overlap=16, device=device, amp=amp)
    else:
        out = run_model(net, x, tile=48, overlap=16, device=device, amp=amp)
    assert out.device.type == "cpu" and out.dtype == x.dtype and out.shape == x.shape
    assert next(net.parameters()).device.type == device
    # fp32 on CUDA may use TF32 convolutions (cuDNN's default); amp rounds to bf16/fp16
    tol = 0.0 if device == "cpu" else (5e-2 if amp else 5e-3)
    torch.testing.assert_close(out, ref, rtol=0, atol=tol)
    whole = run_model(net, x, tile=0, device=device)
    assert whole.shape == x.shape and torch.isfinite(whole).all()


def _pairs(root: Path, n: int = 4, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        for side, arr in (("gt", gt), ("lq", (gt * 0.8).astype(np.uint8))):
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / side / f"im{i}.png")
    return root


@pytest.mark.parametrize("device", DEVICES)
def test_trainer_step_on_device_and_resume_on_cpu(tmp_path, device):
    """The trainer's defaults on the device (amp auto = bf16 and channels_last on CUDA), a state
    saved there, resumed on the CPU (it works on CPU whatever device saved it)."""
    from colorfid.train import Trainer, parse_options

    data = _pairs(tmp_path / "data")
    raw = {
        "name": "dev", "manual_seed": 3,
        "datasets": {"train": {"dataroot_gt": str(data / "gt"), "dataroot_lq": str(data / "lq"), "gt_size": 32,
                               "batch_size_per_gpu": 2, "num_worker_per_gpu": 0}},
        "network_g": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1], "middle_blk_num": 1, "dec_blk_nums": [1]},
        "path": {"experiments_root": str(tmp_path / "exp")},
        "train": {"optim_g": {"type": "AdamW", "lr": 1e-3}, "total_iter": 3,
                  "pixel_opt": {"type": "ColorAwareLoss", "deficit_weight": 1.0}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 3},
    }
    tr = Trainer(parse_options(raw), device=device, progress=False)
    on_cuda = device == "cuda"
    assert tr.device.type == device
    assert (tr.amp_dtype == torch.bfloat16) == on_cuda and tr.channels_last == on_cuda
    summary = tr.train()
    assert summary.iteration == 3 and summary.skipped_steps == 0 and summary.last_state is not None
    raw["train"]["total_iter"] = 4
    resumed = Trainer(parse_options(raw), resume=summary.last_state, device="cpu", progress=False)
    assert resumed.device.type == "cpu" and resumed.iteration == 3
    out = resumed.train_step(resumed._next_batch())
    assert torch.isfinite(out["l_total"])


@pytest.mark.parametrize("device", DEVICES)
def test_evaluate_on_device(tmp_path, device):
    from colorfid.evaluation import evaluate

    data = _pairs(tmp_path / "set", n=2, size=48)
    kw = dict(sets=[str(data)], progress=False)  # own output caches: nothing of the CPU run is reused
    ref = evaluate(_small_nafnet(), device="cpu", cache_dir=tmp_path / "cache_cpu", **kw)
    got = evaluate(_small_nafnet(), device=device, cache_dir=tmp_path / f"cache_{device}", **kw)
    assert got.provenance["device"].startswith(device)
    name = ref.set_names[0]
    for metric in ("de00_p95", "sat_ratio_hc", "psnr", "ssim"):
        a, b = ref.aggregate(name, metric), got.aggregate(name, metric)
        assert _rel(a, b) <= (0.0 if device == "cpu" else 1e-3), metric
