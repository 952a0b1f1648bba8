"""run_model: whole-image path equals the model, tiling is exact for local models, TLC narrows
the tiling error of NAFNet's global pooling, and the device / amp / mode contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from colorfid.errors import ColorfidWarning, DTypeError, ShapeError, UsageError
from colorfid.models.inference import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    feather_ramp,
    run_model,
    select_device,
    tile_starts,
)
from colorfid.models.nafnet import NAFNet, NAFNetLocal

SMALL = dict(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1], dec_blk_nums=[1, 1, 1])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nafnet(seed=0, cls=NAFNet, **kw):
    torch.manual_seed(seed)
    m = cls(**SMALL, **kw)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return m


def _local_net(seed=0):
    """Three 3x3 convs: receptive radius 3 px, no global statistics."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
                         nn.Conv2d(8, 3, 3, padding=1))


def _psnr(a, b):
    return 10 * math.log10(1.0 / ((a.double() - b.double()) ** 2).mean().item())


def _photo_like(h, w, seed=0):
    """Smooth walls plus strongly coloured rectangles and mild noise (statistics vary by region)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.55 + 0.25 * xx, 0.5 + 0.2 * yy, 0.45 + 0.15 * xx * yy])
    colours = torch.tensor([[0.1, 0.3, 0.8], [0.1, 0.6, 0.3], [0.0, 0.55, 0.55], [0.9, 0.85, 0.8]])
    for i in range(8):
        c = colours[i % 4].view(3, 1, 1)
        y0, x0 = int(torch.randint(0, h - 8, (1,), generator=g)), int(torch.randint(0, w - 8, (1,), generator=g))
        img[:, y0 : y0 + h // 3, x0 : x0 + w // 3] = c
    return (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# tiling geometry
# ---------------------------------------------------------------------------------------------


def test_tile_starts_cover_with_overlap():
    for length in (1, 15, 64, 65, 100, 511, 512, 513, 1000, 3300):
        for tile, overlap in ((64, 16), (512, 32), (96, 0)):
            starts = tile_starts(length, tile, overlap)
            t = min(tile, length)
            assert starts[0] == 0 and starts[-1] + t == length
            assert all(b > a for a, b in zip(starts, starts[1:]))
            assert all(a + t - b >= overlap for a, b in zip(starts, starts[1:]))  # overlaps
            assert len(starts) == 1 or len(starts) == math.ceil((length - overlap) / (tile - overlap))


def test_feather_ramps_are_complementary():
    tile, overlap = 64, 16
    a = feather_ramp(tile, overlap, lead=False, trail=True, dtype=torch.float64)
    b = feather_ramp(tile, overlap, lead=True, trail=False, dtype=torch.float64)
    shared = a[tile - overlap :] + b[:overlap]
    torch.testing.assert_close(shared, torch.ones(overlap, dtype=torch.float64))
    assert a[-overlap // 4 :].abs().sum() == 0 and b[: overlap // 4].abs().sum() == 0  # dead margin
    assert torch.equal(feather_ramp(10, 4, False, False), torch.ones(10))


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


def test_whole_image_equals_model_call():
    model = _nafnet().eval()
    x = torch.rand(3, 37, 29)
    with torch.no_grad():
        expected = model(x[None])[0]
    for tile in (None, 0, 64):  # 64 >= image: no tiling
        out = run_model(model, x, tile=tile, device="cpu")
        assert out.shape == x.shape and out.device.type == "cpu"
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    batch = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(run_model(model, batch, device="cpu"), model(batch), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 150, 97), (2, 3, 80, 131)])
def test_tiling_is_exact_for_local_models(shape):
    model = _local_net()
    x = torch.rand(*shape)
    with torch.no_grad():
        whole = model(x if x.dim() == 4 else x[None])
        whole = whole if x.dim() == 4 else whole[0]
    tiled = run_model(model, x, tile=48, overlap=16, device="cpu", progress=False)
    assert tiled.shape == x.shape
    assert (tiled - whole).abs().max().item() < 1e-5
    # with no dead margin (overlap 0 -> hard seams) the tile borders would show
    seams = run_model(model, x, tile=48, overlap=0, device="cpu")
    assert (seams - whole).abs().max().item() > 1e-3


def test_tiled_vs_whole_nafnet_and_tlc_narrows_the_gap():
    x = _photo_like(192, 176)
    plain = _nafnet(seed=1).eval()
    local = NAFNetLocal(**SMALL, train_size=48).eval()  # pooling window 72 px < tile 96
    local.load_state_dict(plain.state_dict())
    whole = run_model(plain, x, tile=0, device="cpu")
    assert _psnr(whole, x) < 35  # the network does something: the comparison is not vacuous
    tiled = run_model(plain, x, tile=96, overlap=32, device="cpu")
    whole_tlc = run_model(local, x, tile=0, device="cpu")
    tiled_tlc = run_model(local, x, tile=96, overlap=32, device="cpu")
    p_plain, p_tlc = _psnr(tiled, whole), _psnr(tiled_tlc, whole_tlc)
    assert p_plain < 200 and p_tlc > p_plain  # global pooling differs per tile; TLC narrows it
    assert p_plain > 35


def test_dtype_mode_and_batching_contract():
    model = _local_net().double().train()
    x = torch.rand(2, 3, 70, 70, dtype=torch.float64)
    out = run_model(model, x, tile=32, overlap=16, device="cpu", batch_size=3)
    assert out.dtype == torch.float64 and model.training  # mode restored
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=0, atol=1e-10)
    out32 = run_model(_local_net(), x.float(), tile=None, device=torch.device("cpu"))
    assert out32.dtype == torch.float32


def test_pad_multiple_for_models_that_need_it():
    class NeedsEight(nn.Module):
        def forward(self, x):
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
            return x * 2

    x = torch.rand(3, 13, 21)
    torch.testing.assert_close(run_model(NeedsEight(), x, pad_multiple=8, device="cpu"), x * 2)


def test_default_max_pixels_switches_to_tiles(monkeypatch):
    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x

    x = torch.rand(3, 40, 50)
    run_model(Spy(), x, device="cpu", max_pixels=40 * 50)
    assert calls == [(1, 3, 40, 50)]
    calls.clear()
    import colorfid.models.inference as inf

    monkeypatch.setattr(inf, "DEFAULT_TILE", 32)
    out = run_model(Spy(), x, device="cpu", max_pixels=100, overlap=8)
    assert len(calls) > 1 and all(c[-2:] == (32, 32) for c in calls)
    torch.testing.assert_close(out, x)
    assert DEFAULT_TILE % 16 == 0 and DEFAULT_OVERLAP < DEFAULT_TILE


# ---------------------------------------------------------------------------------------------
# devices, amp, errors
# ---------------------------------------------------------------------------------------------


def test_select_device():
    dev = select_device()
    assert dev.type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert dev.type != "cuda"
        with pytest.raises(UsageError, match="available: .*cpu"):
            select_device("cuda")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="unknown device"):
        select_device("gpu0")


def test_amp_ignored_on_cpu_with_warning():
    model = _local_net()
    x = torch.rand(3, 16, 16)
    with pytest.warns(ColorfidWarning, match="autocast"):
        out = run_model(model, x, device="cpu", amp=True)
    torch.testing.assert_close(out, run_model(model, x, device="cpu"))
    with pytest.raises(UsageError, match="bf16"):
        run_model(model, x, device="cpu", amp="int8")


def test_progress_bar_on_request(capsys):
    run_model(_local_net(), torch.rand(3, 40, 40), tile=16, overlap=4, device="cpu", progress=True)
    assert "tiles" in capsys.readouterr().err


def test_bad_inputs():
    model = _local_net()
    with pytest.raises(ShapeError, match=r"\(40, 40\)"):
        run_model(model, torch.rand(40, 40), device="cpu")
    with pytest.raises(DTypeError, match="uint8"):
        run_model(model, torch.zeros(3, 8, 8, dtype=torch.uint8), device="cpu")
    with pytest.raises(UsageError, match="overlap"):
        run_model(model, torch.rand(3, 64, 64), tile=32, overlap=32, device="cpu")
    with pytest.raises(ShapeError, match="output"):
        run_model(nn.Conv2d(3, 3, 3), torch.rand(3, 8, 8), device="cpu")
