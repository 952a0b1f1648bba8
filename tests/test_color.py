"""colorfid.color against colour-science, scikit-image and hand-derived values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colorfid import color as C
from colorfid.errors import DTypeError, RangeError, ShapeError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import colour
    import skimage.color as skc

RNG = np.random.default_rng(20261121)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.movedim(-3, -1).numpy()


def _random_srgb(n: int = 64) -> torch.Tensor:
    x = torch.from_numpy(RNG.uniform(0.0, 1.0, (3, n, n)))
    # edge values: black, white, greys, primaries, near the transfer-function knee
    edges = torch.tensor(
        [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.04045, 0.04045, 0.04045],
         [0.0404, 0.0405, 0.5], [1e-9, 0, 1]],
        dtype=torch.float64,
    )
    x[:, 0, : len(edges)] = edges.T
    return x


# ------------------------------------------------------------------------------ oracles


def test_srgb_to_lab_matches_colour_science_float64():
    x = _random_srgb()
    # colour-science switches to the power segment at 0.0404499 (the continuity point) where
    # IEC 61966-2-1 says "<= 0.04045: linear"; the interval between is tested separately below.
    x[:, 0, 6] = 0.5
    ours = C.srgb_to_lab(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(_hwc(x)))
    assert np.abs(_hwc(ours) - ref).max() <= 1e-10


def test_follows_colour_science_not_scikit_image():
    # Documented choice: the two references differ by up to ~0.02 in a*/b*; we match colour-science.
    x = _random_srgb()
    ours = _hwc(C.srgb_to_lab(x))
    sk = skc.rgb2lab(_hwc(x))
    gap = np.abs(ours - sk).max()
    assert 1e-3 < gap < 0.05


def test_transfer_functions_match_colour_science():
    x = torch.from_numpy(np.concatenate([RNG.uniform(0, 1, 1000), [0.0, 0.04, 0.0031308, 1.0]])).reshape(1, -1, 1)
    x3 = x.expand(3, -1, -1).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin_ref = colour.models.eotf_sRGB(x3.numpy())
        enc_ref = colour.models.eotf_inverse_sRGB(x3.numpy())
    assert np.abs(C.srgb_to_linear(x3).numpy() - lin_ref).max() <= 1e-12
    assert np.abs(C.linear_to_srgb(x3).numpy() - enc_ref).max() <= 1e-12


def test_transfer_function_knee_follows_iec_61966_2_1():
    knee = torch.full((3, 1, 1), 0.04045, dtype=torch.float64)
    assert torch.equal(C.srgb_to_linear(knee), knee / 12.92)
    above = torch.full((3, 1, 1), 0.0404501, dtype=torch.float64)
    assert torch.allclose(C.srgb_to_linear(above), ((above + 0.055) / 1.055) ** 2.4, rtol=0, atol=1e-15)
    enc = torch.full((3, 1, 1), 0.0031308, dtype=torch.float64)
    assert torch.equal(C.linear_to_srgb(enc), 12.92 * enc)


def test_xyz_lab_both_ways_match_colour_science_including_dark_segment():
    xyz = torch.from_numpy(np.concatenate([RNG.uniform(0, 1.1, (3, 200)), RNG.uniform(0, 0.008, (3, 56))], axis=1)).reshape(3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab_ref = colour.XYZ_to_Lab(_hwc(xyz))
        xyz_back = colour.Lab_to_XYZ(lab_ref)
    lab = C.xyz_to_lab(xyz)
    assert np.abs(_hwc(lab) - lab_ref).max() <= 1e-10
    assert np.abs(_hwc(C.lab_to_xyz(lab)) - xyz_back).max() <= 1e-12


def test_lch_matches_colour_science_and_round_trips():
    lab = torch.from_numpy(np.stack([RNG.uniform(0, 100, 400), RNG.uniform(-128, 128, 400), RNG.uniform(-128, 128, 400)])).reshape(3, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = colour.Lab_to_LCHab(_hwc(lab))
    lch = C.lab_to_lch(lab)
    assert np.abs(_hwc(lch) - ref).max() <= 1e-10
    assert torch.allclose(C.lch_to_lab(lch), lab, atol=1e-10)
    assert torch.allclose(C.chroma(lab), lch[1], atol=0)


def test_ycbcr_matches_bt601_studio_range():
    # Hand-derived corners of BT.601 studio swing (8-bit codes / 255).
    corners = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.float64).T.reshape(3, 3, 1)
    y = C.srgb_to_ycbcr(corners)[..., 0] * 255
    assert torch.allclose(y[:, 0], torch.tensor([16.0, 128, 128], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(y[:, 1], torch.tensor([235.0, 128, 128], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(y[:, 2], torch.tensor([16 + 65.481, 128 - 37.797, 128 + 112], dtype=torch.float64), atol=1e-9)
    # scikit-image's rgb2ycbcr is the same standard on [0, 255] codes.
    x = _random_srgb(16)
    assert np.abs(_hwc(C.srgb_to_ycbcr(x)) * 255 - skc.rgb2ycbcr(_hwc(x))).max() <= 1e-9
    assert torch.allclose(C.srgb_to_ycbcr(x, y_only=True)[0], C.srgb_to_ycbcr(x)[0])


def test_hsv_matches_scikit_image():
    x = _random_srgb(32)
    x[:, 1, :4] = torch.tensor([[0.3, 0.3, 0.1], [0.2, 0.5, 0.5], [0.7, 0.1, 0.7], [0.0, 0.0, 0.0]], dtype=torch.float64).T
    ref = skc.rgb2hsv(_hwc(x))
    ours = _hwc(C.srgb_to_hsv(x))
    assert np.abs(ours[..., 0] / 360.0 - ref[..., 0]).max() <= 1e-12
    assert np.abs(ours[..., 1:] - ref[..., 1:]).max() <= 1e-12
    assert torch.allclose(C.hsv_saturation(x), C.srgb_to_hsv(x)[1])


# ------------------------------------------------------------------------------ layout, dtype


def test_dim_argument_and_batch_layout():
    x = _random_srgb(12)
    hwc = x.movedim(0, -1).contiguous()
    assert torch.allclose(C.srgb_to_lab(hwc, dim=-1), C.srgb_to_lab(x).movedim(0, -1), atol=0)
    batch = torch.stack([x, x.flip(-1)])
    assert torch.allclose(C.srgb_to_lab(batch)[1], C.srgb_to_lab(x.flip(-1)), atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    x = _random_srgb(12).to(dtype)
    for fn in (C.srgb_to_lab, C.srgb_to_linear, C.srgb_to_hsv, C.srgb_to_ycbcr):
        assert fn(x).dtype == dtype
    assert C.lab_to_srgb(C.srgb_to_lab(x)).dtype == dtype


def test_to_float_is_the_integer_path():
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(3, 1, 1)
    assert torch.allclose(C.to_float(u8, torch.float64).flatten(), torch.tensor([0, 128 / 255, 1.0], dtype=torch.float64))
    u16 = torch.from_numpy(np.array([0, 32768, 65535], dtype=np.uint16)).reshape(3, 1, 1)
    assert torch.allclose(C.to_float(u16, torch.float64).flatten(), torch.tensor([0, 32768 / 65535, 1.0], dtype=torch.float64))
    with pytest.raises(DTypeError, match="to_float"):
        C.srgb_to_lab(u8)
    with pytest.raises(DTypeError):
        C.to_float(torch.zeros(3, 1, 1, dtype=torch.int32))


def _codes(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def test_srgb_uint8_to_lab_matches_colour_science_on_every_code():
    # every 8-bit grey and primary ramp, plus random colours, against colour-science (float64)
    k = np.arange(256, dtype=np.uint8)
    ramps = np.stack([np.stack([k, k, k], -1), np.stack([k, 0 * k, 0 * k], -1), np.stack([0 * k, k, 0 * k], -1),
                      np.stack([0 * k, 0 * k, k], -1)])  # (4, 256, 3)
    codes = np.concatenate([ramps, _codes(4, 256, 3)], axis=0)  # HWC
    ours = C.srgb_uint8_to_lab(torch.from_numpy(codes), dim=-1, dtype=torch.float64).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(codes / 255.0))
    # code 10 (0.0392) and 11 (0.0431) straddle the IEC knee 0.04045; no code lies in the
    # 5e-8-wide interval where colour-science's knee differs from the standard's
    assert np.abs(ours - ref).max() <= 1e-10


@pytest.mark.parametrize(
    "layout",
    ["hwc_viewed_chw", "chw", "hwc_dim_last", "nchw", "nhwc_viewed_nchw", "transposed"],
)
@pytest.mark.parametrize("numpy_take", [True, False], ids=["cpu-numpy-take", "torch-gathers"])
def test_srgb_uint8_to_lab_equals_the_float_path_in_every_layout(layout, numpy_take, monkeypatch):
    monkeypatch.setattr(C, "_NUMPY_TAKE", numpy_take)  # False: the path CUDA tensors take
    a = _codes(2, 190, 370, 3)  # > 2^16 pixels per image: several chunks
    t = torch.from_numpy(a)
    img, dim = {
        "hwc_viewed_chw": (t[0].permute(2, 0, 1), -3),
        "chw": (t[0].permute(2, 0, 1).contiguous(), -3),
        "hwc_dim_last": (t[0], -1),
        "nchw": (t.permute(0, 3, 1, 2).contiguous(), 1),
        "nhwc_viewed_nchw": (t.permute(0, 3, 1, 2), -3),
        "transposed": (t[0].permute(2, 1, 0), 0),
    }[layout]
    ref = C.srgb_to_lab(C.to_float(img, torch.float64), dim=dim)
    out = C.srgb_uint8_to_lab(img, dim=dim, dtype=torch.float64)
    assert out.shape == img.shape and out.is_contiguous() and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    out32 = C.srgb_uint8_to_lab(img, dim=dim)
    assert out32.dtype == torch.float32
    # float32: one rounding of the decoded value; the float path rounds k/255 and the decode
    assert (out32.double() - ref).abs().max() <= (C.srgb_to_lab(C.to_float(img), dim=dim).double() - ref).abs().max() + 1e-5


def test_srgb_uint8_to_lab_rejects_what_it_cannot_read():
    with pytest.raises(DTypeError, match="uint8"):
        C.srgb_uint8_to_lab(torch.rand(3, 4, 4))
    with pytest.raises(DTypeError, match="uint8"):
        C.srgb_uint8_to_lab(torch.zeros(3, 4, 4, dtype=torch.int16))
    with pytest.raises(DTypeError, match="float32 or float64"):
        C.srgb_uint8_to_lab(torch.zeros(3, 4, 4, dtype=torch.uint8), dtype=torch.float16)
    with pytest.raises(ShapeError, match="channels"):
        C.srgb_uint8_to_lab(torch.zeros(4, 4, 4, dtype=torch.uint8))
    with pytest.raises(DTypeError):
        C.srgb_uint8_to_lab(np.zeros((3, 4, 4), dtype=np.uint8))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ bad input


def test_channel_dim_not_three_names_the_shape():
    with pytest.raises(ShapeError, match=r"\(4, 5, 5\)"):
        C.srgb_to_lab(torch.rand(4, 5, 5))
    with pytest.raises(ShapeError):
        C.srgb_to_lab(torch.rand(5, 5, 3))  # channels last without dim=-1
    with pytest.raises(ShapeError):
        C.srgb_to_lab(torch.tensor(0.5))


def test_out_of_range_raises_unless_clipped():
    x = torch.rand(3, 4, 4, dtype=torch.float64)
    x[0, 0, 0] = 1.2
    with pytest.raises(RangeError, match="1.2"):
        C.srgb_to_lab(x)
    clipped = C.srgb_to_lab(x, clip=True)
    assert torch.allclose(clipped[:, 0, 0], C.srgb_to_lab(x.clamp(0, 1))[:, 0, 0])
    x[0, 0, 0] = 1.0005  # within tolerance
    C.srgb_to_lab(x)
    x[0, 0, 0] = float("nan")
    with pytest.raises(RangeError, match="non-finite"):
        C.srgb_to_lab(x, clip=True)
    # check=False: the natural extension, for losses on unconstrained outputs
    y = torch.full((3, 1, 1), 1.1, dtype=torch.float64)
    assert torch.isfinite(C.srgb_to_lab(y, check=False)).all()


# ------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_gradients_finite_everywhere(dtype):
    pts = torch.tensor(
        [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [1, 0, 0], [0, 0, 1], [0.04045, 0.5, 0.0031308], [1.05, -0.05, 0.5]],
        dtype=torch.float64,
    ).T.reshape(3, 8, 1).to(dtype)
    for fn in (
        lambda x: C.srgb_to_lab(x, check=False),
        lambda x: C.lab_to_lch(C.srgb_to_lab(x, check=False))[..., :2, :, :],
        lambda x: C.chroma(C.srgb_to_lab(x, check=False)),
        lambda x: C.srgb_to_hsv(x, check=False),
        lambda x: C.linear_to_srgb(C.srgb_to_linear(x, check=False)),
    ):
        x = pts.clone().requires_grad_(True)
        fn(x).float().sum().backward()
        assert torch.isfinite(x.grad).all(), fn
    # the hue angle: derivative ~ 57.3/C, finite in every dtype away from neutral, and in
    # float32/float64 also at near-neutral greys (float16 cannot hold ~1e6: documented)
    lab = C.srgb_to_lab(pts.double(), check=False).to(dtype)
    lab = lab if dtype not in (torch.float16,) else lab[:, 4:6]
    lab = lab.detach().requires_grad_(True)
    C.lab_to_lch(lab)[2].float().sum().backward()
    assert torch.isfinite(lab.grad).all()
    # out-of-gamut Lab back to sRGB
    lab = torch.tensor([[50.0, 120.0, -120.0], [0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [5.0, -80.0, 90.0]]).T.reshape(3, 4, 1).to(dtype)
    lab.requires_grad_(True)
    C.lab_to_srgb(lab).float().sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_chroma_gradient_at_zero_is_zero_not_nan():
    lab = torch.zeros(3, 1, 1, dtype=torch.float64, requires_grad=True)
    C.chroma(lab).sum().backward()
    assert torch.equal(lab.grad, torch.zeros_like(lab))


def test_gradcheck_srgb_to_lab_and_back():
    x = torch.from_numpy(RNG.uniform(0.1, 0.9, (3, 3, 3))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: C.srgb_to_lab(t), (x,))
    lab = C.srgb_to_lab(x).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: C.lab_to_srgb(t), (lab,))


# ------------------------------------------------------------------------------ properties


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_srgb_lab_round_trip(rgb):
    x = torch.tensor(rgb, dtype=torch.float64).reshape(3, 1, 1)
    back = C.lab_to_srgb(C.srgb_to_lab(x))
    assert torch.allclose(back, x, atol=1e-6, rtol=0)


def test_chunked_path_equals_one_pass_and_keeps_gradients():
    # > 2^16 pixels: without a gradient the conversion runs in cache-sized chunks
    x = torch.from_numpy(RNG.uniform(0, 1, (2, 3, 300, 300)))
    whole = C._srgb_to_lab(x, 1)
    # chunks apply the 3x3 matrices with mm, the whole tensor with multiply-adds: equal to rounding
    torch.testing.assert_close(C.srgb_to_lab(x), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(C.lab_to_srgb(whole), C._lab_to_srgb(whole, 1), rtol=0, atol=1e-14)
    xg = x.clone().requires_grad_(True)
    C.srgb_to_lab(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
