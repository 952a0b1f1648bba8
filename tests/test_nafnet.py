"""NAFNet: official key list, behaviour equal to an independent functional re-implementation.

The reference below is written from the published description of NAFNet (Chen et al., ECCV
2022, and the facts listed in golden/reference/README.md) directly with ``F.conv2d`` on the
state dict; it shares no code with colorfid.models.nafnet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from colorfid.errors import ShapeError, UsageError
from colorfid.models.nafnet import (
    LayerNorm2d,
    LocalAvgPool2d,
    NAFBlock,
    NAFNet,
    NAFNetLocal,
    SimpleGate,
    nafnet_tlc_kernel_sizes,
)

REPO = Path(__file__).resolve().parents[1]
GOLDEN_KEYS = REPO / "golden" / "reference" / "nafnet_width32_keys.txt"
SHARED_KEYS = REPO.parent / "shared" / "reference" / "nafnet_width32_keys.txt"
GOLDEN_SHA256 = "ffd8dfd60642e9a3e3a30ee4a1ad190c8f47cb1a756b2968bd89997bef5ce6b8"
SIDD32 = dict(img_channel=3, width=32, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8], dec_blk_nums=[2, 2, 2, 2])
SMALL = dict(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 2, 1], dec_blk_nums=[1, 1, 2])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# independent functional reference
# ---------------------------------------------------------------------------------------------


def ref_layernorm(x, w, b, eps=1e-6):
    mu = x.mean(dim=1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w[None, :, None, None] + b[None, :, None, None]


def ref_pixel_shuffle(x, r=2):
    n, c, h, w = x.shape
    x = x.reshape(n, c // (r * r), r, r, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // (r * r), h * r, w * r)


def ref_global_pool(t, level):
    return t.mean(dim=(2, 3), keepdim=True)


def make_ref_local_pool(kernels):
    """Brute-force TLC pooling: stride-1 box mean on the valid part, replicate-padded back."""

    def pool(t, level):
        kh, kw = kernels[level]
        h, w = t.shape[-2:]
        if kh >= h and kw >= w:
            return t.mean(dim=(2, 3), keepdim=True)
        k1, k2 = min(kh, h), min(kw, w)
        out = F.avg_pool2d(t, (k1, k2), stride=1)
        oh, ow = out.shape[-2:]
        top, left = (h - oh) // 2, (w - ow) // 2
        rows = torch.arange(h) - top
        cols = torch.arange(w) - left
        return out[:, :, rows.clamp(0, oh - 1)][:, :, :, cols.clamp(0, ow - 1)]

    return pool


def ref_gate(t):
    c = t.shape[1] // 2
    return t[:, :c] * t[:, c:]


def ref_block(x, p, pre, pool, level):
    t = ref_layernorm(x, p[pre + "norm1.weight"], p[pre + "norm1.bias"])
    t = F.conv2d(t, p[pre + "conv1.weight"], p[pre + "conv1.bias"])
    t = F.conv2d(t, p[pre + "conv2.weight"], p[pre + "conv2.bias"], padding=1, groups=t.shape[1])
    t = ref_gate(t)
    t = t * F.conv2d(pool(t, level), p[pre + "sca.1.weight"], p[pre + "sca.1.bias"])
    t = F.conv2d(t, p[pre + "conv3.weight"], p[pre + "conv3.bias"])
    y = x + t * p[pre + "beta"]
    t = ref_layernorm(y, p[pre + "norm2.weight"], p[pre + "norm2.bias"])
    t = ref_gate(F.conv2d(t, p[pre + "conv4.weight"], p[pre + "conv4.bias"]))
    t = F.conv2d(t, p[pre + "conv5.weight"], p[pre + "conv5.bias"])
    return y + t * p[pre + "gamma"]


def ref_nafnet(x, p, cfg, pool=ref_global_pool):
    enc, dec, mid = cfg["enc_blk_nums"], cfg["dec_blk_nums"], cfg["middle_blk_num"]
    h, w = x.shape[-2:]
    m = 2 ** len(enc)
    xp = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m))
    f = F.conv2d(xp, p["intro.weight"], p["intro.bias"], padding=1)
    skips = []
    for i, n in enumerate(enc):
        for j in range(n):
            f = ref_block(f, p, f"encoders.{i}.{j}.", pool, i)
        skips.append(f)
        f = F.conv2d(f, p[f"downs.{i}.weight"], p[f"downs.{i}.bias"], stride=2)
    for j in range(mid):
        f = ref_block(f, p, f"middle_blks.{j}.", pool, len(enc))
    for i, n in enumerate(dec):
        f = ref_pixel_shuffle(F.conv2d(f, p[f"ups.{i}.0.weight"])) + skips[len(enc) - 1 - i]
        for j in range(n):
            f = ref_block(f, p, f"decoders.{i}.{j}.", pool, len(enc) - 1 - i)
    out = F.conv2d(f, p["ending.weight"], p["ending.bias"], padding=1) + xp
    return out[:, :, :h, :w]


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights of a realistic scale: PyTorch's default conv init, random beta/gamma
    (blocks are not the identity), random biases, perturbed LayerNorm affine."""
    torch.manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.reset_parameters()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.5)
            elif ".norm" in name and name.endswith("weight"):
                prm.copy_(1 + 0.2 * torch.randn(prm.shape, generator=g))
            elif name.endswith("bias"):
                prm.copy_(0.1 * torch.randn(prm.shape, generator=g))
    return model


# ---------------------------------------------------------------------------------------------
# the official key list
# ---------------------------------------------------------------------------------------------


def test_golden_key_file_provenance():
    data = GOLDEN_KEYS.read_bytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256
    if SHARED_KEYS.is_file():  # present in the project's workspace, absent in a bare clone
        assert SHARED_KEYS.read_bytes() == data


def test_sidd_width32_keys_and_shapes_match_official():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = NAFNet(**SIDD32)
        local = NAFNetLocal(**SIDD32)
    ours = sorted(f"{k}\t{list(v.shape)}" for k, v in model.state_dict().items())
    official = GOLDEN_KEYS.read_text().splitlines()
    assert len(official) == 664
    missing = sorted(set(official) - set(ours))
    extra = sorted(set(ours) - set(official))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == 29_159_715
    assert len(list(model.buffers())) == 0
    assert sorted(f"{k}\t{list(v.shape)}" for k, v in local.state_dict().items()) == official


def test_loads_official_layout_strictly():
    src = randomize(NAFNet(**SMALL), seed=3)
    dst = NAFNet(**SMALL)
    dst.load_state_dict(src.state_dict(), strict=True)
    tlc = NAFNetLocal(**SMALL, train_size=32)
    tlc.load_state_dict(src.state_dict(), strict=True)


# ---------------------------------------------------------------------------------------------
# behaviour = the published network
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(17, 23), (16, 16), (5, 40), (1, 1)])
def test_forward_matches_functional_reference_float32(size):
    torch.manual_seed(0)
    model = randomize(NAFNet(**SMALL), seed=1).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        ours = model(x)
        ref = ref_nafnet(x, dict(model.state_dict()), SMALL)
    assert ours.shape == x.shape
    assert (ours - ref).abs().max().item() <= 1e-5
    # the network is far from the identity with these weights: the comparison is not vacuous
    assert (ours - x).abs().mean().item() > 0.05


@pytest.mark.parametrize("size", [(13, 21), (24, 8)])
def test_gradients_match_functional_reference(size):
    model = randomize(NAFNet(**SMALL), seed=2).double()
    x = torch.rand(1, 3, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 3, *size, dtype=torch.float64)
    (model(x) * weight).sum().backward()
    ours_x = x.grad.clone()
    ours_p = {k: p.grad.clone() for k, p in model.named_parameters()}

    x2 = x.detach().clone().requires_grad_(True)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.state_dict().items()}
    (ref_nafnet(x2, params, SMALL) * weight).sum().backward()
    torch.testing.assert_close(ours_x, x2.grad, rtol=1e-9, atol=1e-10)
    assert set(ours_p) == set(params)
    for k, g in ours_p.items():
        torch.testing.assert_close(g, params[k].grad, rtol=1e-9, atol=1e-10, msg=lambda m, k=k: f"{k}: {m}")
    assert all(g.abs().sum() > 0 for g in ours_p.values())


def test_gradients_float32_close_to_reference():
    model = randomize(NAFNet(**SMALL), seed=4)
    x = torch.rand(1, 3, 19, 11, requires_grad=True)
    model(x).square().mean().backward()
    x2 = x.detach().clone().requires_grad_(True)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.state_dict().items()}
    ref_nafnet(x2, params, SMALL).square().mean().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-6)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, params[k].grad, rtol=1e-4, atol=1e-6)


def test_fresh_blocks_are_identity_and_beta_gamma_start_at_zero():
    block = NAFBlock(8)
    assert torch.equal(block.beta, torch.zeros(1, 8, 1, 1)) and torch.equal(block.gamma, torch.zeros(1, 8, 1, 1))
    x = torch.randn(2, 8, 7, 9)
    assert torch.equal(block(x), x)


def test_simple_gate_multiplies_halves():
    x = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2)
    assert torch.equal(SimpleGate()(x), x[:, :2] * x[:, 2:])


def test_layernorm2d_against_float64_reference_and_gradcheck():
    torch.manual_seed(0)
    ln = LayerNorm2d(5).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(5))
        ln.bias.copy_(torch.randn(5))
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64) * 3 + 1
    # oracle: torch's layer_norm over the channel axis moved last
    oracle = F.layer_norm(x.permute(0, 2, 3, 1), (5,), ln.weight, ln.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), oracle, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ln(x), ref_layernorm(x, ln.weight, ln.bias), rtol=1e-12, atol=1e-12)
    assert ln.eps == 1e-6
    xs = torch.randn(2, 5, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ln, (xs,))
    assert torch.autograd.gradgradcheck(ln, (xs,))
    # float32 stays within float rounding of the float64 value
    ln32 = LayerNorm2d(5)
    ln32.load_state_dict({k: v.float() for k, v in ln.state_dict().items()})
    torch.testing.assert_close(ln32(x.float()).double(), ln(x), rtol=1e-5, atol=1e-5)


def test_shape_and_config_errors():
    with pytest.raises(ShapeError, match=r"\(2, 4, 8, 8\)"):
        NAFNet(width=4)(torch.rand(2, 4, 8, 8))
    with pytest.raises(UsageError, match="decoder"):
        NAFNet(enc_blk_nums=[1, 1], dec_blk_nums=[1])


# ---------------------------------------------------------------------------------------------
# TLC (NAFNetLocal)
# ---------------------------------------------------------------------------------------------


def test_tlc_default_kernels_are_official():
    # official NAFNetLocal: train_size 256, base_size 1.5 * 256 = 384, scaled per level
    assert nafnet_tlc_kernel_sizes(4) == [(384, 384), (192, 192), (96, 96), (48, 48), (24, 24)]
    assert nafnet_tlc_kernel_sizes(2, train_size=(1, 3, 64, 128)) == [(96, 192), (48, 96), (24, 48)]
    with torch.device("meta"):
        model = NAFNetLocal(**SIDD32)
    assert model.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert model.encoders[0][0].sca[0].kernel_size == (384, 384)
    assert model.decoders[-1][0].sca[0].kernel_size == (384, 384)
    assert model.decoders[0][0].sca[0].kernel_size == (48, 48)


def test_local_avg_pool_against_brute_force():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 17, dtype=torch.float64) + 5.0
    ref = make_ref_local_pool([(4, 6)])
    torch.testing.assert_close(LocalAvgPool2d((4, 6))(x), ref(x, 0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(LocalAvgPool2d((20, 6))(x), ref_local := make_ref_local_pool([(20, 6)])(x, 0))
    assert ref_local.shape == x.shape
    torch.testing.assert_close(LocalAvgPool2d((11, 17))(x), x.mean(dim=(2, 3), keepdim=True))


def test_tlc_equals_nafnet_when_window_covers_image():
    plain = randomize(NAFNet(**SMALL), seed=5).eval()
    local = NAFNetLocal(**SMALL, train_size=32).eval()  # base 48
    local.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 40, 45)
    with torch.no_grad():
        torch.testing.assert_close(local(x), plain(x), rtol=0, atol=1e-6)


def test_tlc_matches_functional_reference_with_local_windows():
    plain = randomize(NAFNet(**SMALL), seed=6).eval()
    local = NAFNetLocal(**SMALL, train_size=16).eval()  # base 24: kernels 24, 12, 6, 3
    local.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 40, 21)
    with torch.no_grad():
        ours = local(x)
        ref = ref_nafnet(x, dict(plain.state_dict()), SMALL, pool=make_ref_local_pool([(24, 24), (12, 12), (6, 6), (3, 3)]))
        assert (ours - ref).abs().max().item() <= 1e-5
        assert (ours - plain(x)).abs().max().item() > 1e-3  # local windows really were used
