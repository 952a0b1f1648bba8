"""Tests of colorfid.metrics against independent oracles.

Oracles: numpy (percentiles), scikit-image (structural_similarity, peak_signal_noise_ratio,
rgb2hsv, deltaE_ciede2000), colour-science (sRGB -> Lab, LCHab, delta_E) and hand-derived
cases. No expected value here is computed by colorfid itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colorfid import metrics as M
from colorfid.errors import ConfigError, DTypeError, RangeError, ShapeError, UnknownNameError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns about matplotlib
    import colour
from skimage.color import deltaE_ciede2000, rgb2hsv
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_KW = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)


def rand_img(seed: int, h: int = 24, w: int = 20, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, h, w) if n is None else (n, 3, h, w)
    return torch.rand(shape, generator=g, dtype=torch.float64)


def hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy().transpose(1, 2, 0)


def colour_lab(x: torch.Tensor) -> np.ndarray:
    """colour-science CIELAB (D65/2°) of a (3, H, W) sRGB tensor, as (H, W, 3)."""
    return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(hwc(x)))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ----------------------------------------------------------------------------------------------
# Protocol and registry
# ----------------------------------------------------------------------------------------------


def test_protocol_defaults_and_round_trip():
    p = M.MetricProtocol()
    assert p.as_dict() == {
        "hc_saturation": 0.5, "hc_chroma": 40.0, "hue_chroma_floor": 10.0, "grey_tolerance": 0.02,
        "low_color_min": 0.10, "low_color_critical": 0.04, "ratio_floor": 0.10, "worst_k": 3, "image_chroma_floor": 2.3,
    }
    q = M.MetricProtocol.from_dict({"hc_saturation": 0.6, "worst_k": 5})
    assert q.hc_saturation == 0.6 and q.worst_k == 5 and q.hc_chroma == 40.0
    assert M.MetricProtocol.from_dict(q.as_dict()) == q


def test_protocol_rejects_unknown_and_bad_values():
    with pytest.raises(ConfigError, match="hc_saturaton.*did you mean 'hc_saturation'.*known keys"):
        M.MetricProtocol.from_dict({"hc_saturaton": 0.5})
    for bad in ({"hc_saturation": 1.5}, {"hc_saturation": "0.5"}, {"worst_k": 2.5}, {"grey_tolerance": -1},
                {"low_color_critical": 0.2}, {"hc_chroma": float("nan")}, {"worst_k": True}):
        with pytest.raises(ConfigError):
            M.MetricProtocol.from_dict(bad)


def test_registry_matches_image_metrics_and_contract():
    expected = [
        "de00_mean", "de00_median", "de00_p95", "de00_p99", "de00_max", "de00_hc_p95", "sat_ratio",
        "sat_ratio_hc", "chroma_ratio_hc", "hue_shift_hc_mean", "hue_shift_hc_p95", "hue_drift_hc",
        "brightness_ratio", "psnr", "ssim", "out_of_range_frac", "nonfinite_count", "grey_collapse",
        "mean_saturation", "hc_fraction", "sat_diff", "brightness_diff", "chroma_ratio", "hue_spread_ratio", "hue_collapse",
    ]
    assert list(M.METRICS) == expected
    t = rand_img(1)
    assert list(M.image_metrics(rand_img(2), t)) == expected
    for name in expected:
        spec = M.get_metric(name)
        assert spec.name == name and spec.description and spec.direction in ("lower", "higher", "target")
        assert spec.title and spec.title != name  # every key has its per-image statistic in words
    targets = {k: s.target for k, s in M.METRICS.items() if s.direction == "target"}
    assert targets == {"sat_ratio": 1.0, "sat_ratio_hc": 1.0, "chroma_ratio_hc": 1.0,
                       "hue_drift_hc": 0.0, "brightness_ratio": 1.0, "sat_diff": 0.0, "brightness_diff": 0.0,
                       "chroma_ratio": 1.0, "hue_spread_ratio": 1.0, "hue_collapse": 0.0}
    assert M.get_metric("psnr").direction == "higher" and M.get_metric("ssim").direction == "higher"
    assert M.get_metric("de00_p95").direction == "lower" and M.get_metric("de00_p95").unit == "ΔE00"
    assert M.get_metric("hue_shift_hc_p95").unit == "degrees"


def test_get_metric_unknown_lists_known_names():
    with pytest.raises(UnknownNameError) as e:
        M.get_metric("sat_ratio_cc")
    msg = str(e.value)
    assert "'sat_ratio_cc'" in msg and "did you mean 'sat_ratio_hc'" in msg
    assert all(k in msg for k in M.METRICS)


# ----------------------------------------------------------------------------------------------
# summarize / percentile
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1001])
def test_summarize_matches_numpy(n):
    v = np.random.default_rng(n).gamma(2.0, 3.0, size=n)
    s = M.summarize(torch.from_numpy(v))
    assert s["pixels"] == n
    np.testing.assert_allclose(
        [s["mean"], s["median"], s["p95"], s["p99"], s["max"]],
        [v.mean(), np.median(v), np.percentile(v, 95), np.percentile(v, 99), v.max()],
        rtol=1e-13, atol=0,
    )


@pytest.mark.parametrize("ties", [False, True])
def test_summarize_large_input_matches_numpy(ties):
    # > 65536 values: the order statistics come from topk / kthvalue instead of a full sort.
    rng = np.random.default_rng(11)
    v = rng.integers(0, 40, size=200_003).astype(np.float64) if ties else rng.gamma(2.0, 3.0, size=200_003)
    s = M.summarize(torch.from_numpy(v))
    np.testing.assert_allclose([s["median"], s["p95"], s["p99"], s["max"]],
                               np.percentile(v, [50, 95, 99, 100]), rtol=1e-13)
    for q in (0.0, 0.001, 12.5, 50.0001, 87.4, 99.9999, 100.0):
        assert M.percentile(torch.from_numpy(v), q) == pytest.approx(np.percentile(v, q), rel=1e-13), q


def test_summarize_bool_mask_and_float32():
    rng = np.random.default_rng(3)
    v = rng.random((17, 23)).astype(np.float32)
    m = rng.random((17, 23)) < 0.3
    s = M.summarize(torch.from_numpy(v), torch.from_numpy(m))
    sel = v[m].astype(np.float64)
    assert s["pixels"] == int(m.sum())
    np.testing.assert_allclose([s["mean"], s["median"], s["p95"], s["p99"], s["max"]],
                               [sel.mean(), np.median(sel), np.percentile(sel, 95), np.percentile(sel, 99), sel.max()],
                               rtol=1e-12)
    # A 0/1 float mask is the same selection as the bool mask.
    assert M.summarize(torch.from_numpy(v), torch.from_numpy(m).float()) == s
    assert M.percentile(torch.from_numpy(v), 37.5, mask=torch.from_numpy(m)) == pytest.approx(np.percentile(sel, 37.5), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60), st.floats(0, 100))
def test_percentile_property_numpy(values, q):
    v = np.asarray(values, dtype=np.float64)
    assert M.percentile(torch.from_numpy(v), q) == pytest.approx(np.percentile(v, q), rel=1e-12, abs=1e-9)


def test_summarize_empty_and_nan():
    v = torch.arange(10.0)
    s = M.summarize(v, torch.zeros(10, dtype=torch.bool))
    assert s["pixels"] == 0 and all(math.isnan(s[k]) for k in ("mean", "median", "p95", "p99", "max"))
    s = M.summarize(v, torch.zeros(10))  # all-zero weights: empty too
    assert s["pixels"] == 0 and math.isnan(s["mean"])
    w = v.clone()
    w[3] = float("nan")
    s = M.summarize(w)
    assert s["pixels"] == 10 and all(math.isnan(s[k]) for k in ("mean", "median", "p95", "p99", "max"))
    # ... but a NaN that the mask excludes is never seen.
    keep = torch.ones(10, dtype=torch.bool)
    keep[3] = False
    assert M.summarize(w, keep)["max"] == 9.0


def test_summarize_weighted_hand_case():
    # values 0, 1, 2 with weights 2, 1, 1: midpoints of the cumulative weight 1, 2.5, 3.5 map to
    # positions 0, 0.6, 1 -> median = 0.5 / 0.6 = 5/6; weighted mean = (0 + 1 + 2) / 4 = 0.75.
    s = M.summarize(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 2.0, 1.0]))
    assert s["mean"] == pytest.approx(0.75, rel=1e-15)
    assert s["median"] == pytest.approx(5 / 6, rel=1e-15)
    # p95 = 1 + (0.95 - 0.6) / 0.4 = 1.875
    assert s["p95"] == pytest.approx(1.875, rel=1e-15)
    assert s["max"] == 2.0 and s["pixels"] == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(0.01, 10)), min_size=2, max_size=40),
       st.floats(0.1, 50), st.sampled_from([50.0, 95.0, 99.0]))
def test_weighted_percentile_properties(pairs, scale, q):
    v = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    w = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    a = M.percentile(v, q, mask=w)
    # Invariant to scaling the weights; mirror-symmetric (q of v = -(100 - q) of -v);
    # equal weights give numpy's linear percentile.
    assert M.percentile(v, q, mask=w * scale) == pytest.approx(a, rel=1e-9, abs=1e-9)
    assert M.percentile(-v, 100 - q, mask=w) == pytest.approx(-a, rel=1e-9, abs=1e-9)
    assert M.percentile(v, q, mask=torch.full_like(w, scale)) == pytest.approx(np.percentile(v.numpy(), q), rel=1e-12, abs=1e-12)
    assert v.min() <= a <= v.max()
    # Order does not matter (ties included).
    perm = torch.randperm(len(v), generator=torch.Generator().manual_seed(len(v)))
    assert M.percentile(v[perm], q, mask=w[perm]) == pytest.approx(a, rel=1e-12, abs=1e-12)


def test_weighted_percentile_ties():
    # Values 0 (weights 1 and 0.5) and 1 (weight 1): the tie group {0} spans cumulative weight
    # [0, 1.5] with mean weight 0.75 -> from 0.375 to 1.125; {1} spans [1.5, 2.5] -> 2.0.
    # Normalised: 0 -> [0, 0.75 / 1.625], 1 -> 1. Median = (0.5 - 0.4615) / 0.5385 = 1 / 14.
    v = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64)
    assert M.percentile(v, 50, mask=w) == pytest.approx(1 / 14, rel=1e-12)
    assert M.percentile(v[[1, 0, 2]], 50, mask=w[[1, 0, 2]]) == pytest.approx(1 / 14, rel=1e-12)


def test_mask_validation():
    v = torch.rand(4, 5)
    with pytest.raises(ShapeError, match=r"\(5, 4\)"):
        M.summarize(v, torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(DTypeError, match="mask.bool"):
        M.summarize(v, torch.ones(4, 5, dtype=torch.uint8))
    with pytest.raises(RangeError):
        M.summarize(v, -torch.ones(4, 5))


# ----------------------------------------------------------------------------------------------
# ΔE maps and masks
# ----------------------------------------------------------------------------------------------


def test_delta_e_map_matches_colour_science():
    x, y = rand_img(10, 16, 16), rand_img(11, 16, 16)
    l1, l2 = colour_lab(x), colour_lab(y)
    for formula, method, args in (("2000", "CIE 2000", (l1, l2)), ("94", "CIE 1994", (l2, l1)), ("76", "CIE 1976", (l1, l2))):
        got = M.delta_e_map(x, y, formula=formula).numpy()
        np.testing.assert_allclose(got, colour.delta_E(*args, method=method), atol=1e-9, err_msg=formula)


def test_delta_e_map_matches_skimage_ciede2000():
    x, y = rand_img(12, 16, 16), rand_img(13, 16, 16)
    from skimage.color import rgb2lab
    # On colour-science's Lab (the white colorfid follows), skimage's CIEDE2000 agrees exactly.
    ref = deltaE_ciede2000(colour_lab(x), colour_lab(y))
    np.testing.assert_allclose(M.delta_e_map(x, y).numpy(), ref, atol=1e-9)
    # skimage's own rgb2lab uses a rounded matrix and white (see colorfid.color): its full chain
    # differs by a few hundredths of a ΔE on random colours, never more.
    ref = deltaE_ciede2000(rgb2lab(hwc(x)), rgb2lab(hwc(y)))
    diff = np.abs(M.delta_e_map(x, y).numpy() - ref)
    assert np.median(diff) < 0.01 and diff.max() < 0.1


def test_delta_e_map_batch_and_errors():
    x, y = rand_img(14, 12, 13, n=2), rand_img(15, 12, 13, n=2)
    d = M.delta_e_map(x, y)
    assert d.shape == (2, 12, 13)
    torch.testing.assert_close(d[1], M.delta_e_map(x[1], y[1]), rtol=0, atol=0)
    with pytest.raises(UnknownNameError, match="2000"):
        M.delta_e_map(x, y, formula="1999")
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(RangeError):
        M.delta_e_map(bad, y)
    with pytest.raises(ShapeError):
        M.delta_e_map(x, y[:, :, :-1])


def test_high_chroma_mask_oracles():
    t = rand_img(20, 30, 30)
    s = rgb2hsv(hwc(t))[..., 1]
    assert torch.equal(M.high_chroma_mask(t), torch.from_numpy(s >= 0.5))
    assert torch.equal(M.high_chroma_mask(t, threshold=0.3), torch.from_numpy(s >= 0.3))
    c = np.hypot(*np.moveaxis(colour_lab(t)[..., 1:], -1, 0))
    got = M.high_chroma_mask(t, space="lab")
    near = np.abs(c - 40) < 1e-9  # ignore pixels within rounding of the threshold
    assert np.array_equal(got.numpy()[~near], (c >= 40)[~near]) and got.dtype == torch.bool
    p = M.MetricProtocol(hc_saturation=0.8)
    assert torch.equal(M.high_chroma_mask(t, protocol=p), torch.from_numpy(s >= 0.8))
    assert M.high_chroma_mask(rand_img(21, n=2)).shape == (2, 24, 20)
    with pytest.raises(UnknownNameError):
        M.high_chroma_mask(t, space="hsl")


# ----------------------------------------------------------------------------------------------
# Saturation, brightness and hue statistics
# ----------------------------------------------------------------------------------------------


def test_saturation_ratio_oracles():
    p, t = rand_img(30), rand_img(31)
    m = torch.from_numpy(np.random.default_rng(0).random((24, 20)) < 0.4)
    sp, stt = rgb2hsv(hwc(p))[..., 1], rgb2hsv(hwc(t))[..., 1]
    mm = m.numpy()
    r = M.saturation_ratio(p, t, mask=m)
    assert r["pixels"] == mm.sum()
    assert r["value"] == pytest.approx(sp[mm].mean() / stt[mm].mean(), rel=1e-12)
    assert M.saturation_ratio(p, t)["value"] == pytest.approx(sp.mean() / stt.mean(), rel=1e-12)
    # Float weights: ratio of weighted means.
    wts = np.random.default_rng(1).random((24, 20))
    r = M.saturation_ratio(p, t, mask=torch.from_numpy(wts))
    assert r["value"] == pytest.approx(np.average(sp, weights=wts) / np.average(stt, weights=wts), rel=1e-12)
    # C* variant against colour-science.
    cp = np.hypot(*np.moveaxis(colour_lab(p)[..., 1:], -1, 0))
    ct = np.hypot(*np.moveaxis(colour_lab(t)[..., 1:], -1, 0))
    r = M.saturation_ratio(p, t, mask=m, space="lab")
    assert r["value"] == pytest.approx(cp[mm].mean() / ct[mm].mean(), rel=1e-10)


def test_saturation_ratio_empty_mask_and_neutral_target():
    p, t = rand_img(32), rand_img(33)
    r = M.saturation_ratio(p, t, mask=torch.zeros(24, 20, dtype=torch.bool))
    assert r["pixels"] == 0 and math.isnan(r["value"])
    grey = t[:1].expand(3, -1, -1).clone()
    r = M.saturation_ratio(p, grey)
    assert r["pixels"] == 24 * 20 and math.isnan(r["value"])  # never a silent 1.0


def _hsv_pixel(h_deg: float, s: float, v: float) -> tuple[float, float, float]:
    """Hand HSV -> RGB (Smith 1978) for one pixel: independent of colorfid."""
    c = v * s
    hp = (h_deg % 360) / 60
    x = c * (1 - abs(hp % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(hp) % 6]
    m = v - c
    return r + m, g + m, b + m


def test_design_scenario_hidden_washout():
    """DESIGN.md: a mostly neutral image whose strongly saturated region is washed out to ~0.8
    of its saturation reads ~1.0 on the whole image but ~0.8 on the high-chroma pixels."""
    h, w = 40, 50
    rng = np.random.default_rng(7)
    gt = np.zeros((h, w, 3))
    pr = np.zeros((h, w, 3))
    for i in range(h):
        for j in range(w):
            v = 0.5 + 0.4 * rng.random()
            if i < 4 and j < 25:  # 5 % of pixels: saturated teal/blue paint, washed out by 0.8
                hue, s = 180 + 40 * rng.random(), 0.85 + 0.1 * rng.random()
                gt[i, j], pr[i, j] = _hsv_pixel(hue, s, v), _hsv_pixel(hue, 0.8 * s, v)
            else:  # warm near-neutral walls, slightly boosted by the model
                hue, s = 30 + 20 * rng.random(), 0.10 + 0.04 * rng.random()
                gt[i, j], pr[i, j] = _hsv_pixel(hue, s, v), _hsv_pixel(hue, 1.09 * s, v)
    p = torch.from_numpy(pr.transpose(2, 0, 1).copy())
    t = torch.from_numpy(gt.transpose(2, 0, 1).copy())
    m = M.image_metrics(p, t)
    assert abs(m["sat_ratio"] - 1.0) < 0.03
    assert m["sat_ratio_hc"] == pytest.approx(0.8, abs=1e-9)
    assert m["hc_fraction"] == pytest.approx(0.05)
    assert M.saturation_ratio(p, t, mask=M.high_chroma_mask(t))["value"] == pytest.approx(0.8, abs=1e-9)
    # (hue_drift_hc is not ~0 here: desaturating at constant HSV hue moves the CIELAB hue of
    # blues by several degrees -- a real effect the hue statistic is there to report.)


def test_brightness_ratio_oracles():
    p, t = rand_img(40), rand_img(41)
    m = torch.from_numpy(np.random.default_rng(2).random((24, 20)) < 0.5)
    mm = m.numpy()
    vp, vt = rgb2hsv(hwc(p))[..., 2], rgb2hsv(hwc(t))[..., 2]
    r = M.brightness_ratio(p, t, mask=m)
    assert r["value"] == pytest.approx(vp[mm].mean() / vt[mm].mean(), rel=1e-12) and r["pixels"] == mm.sum()
    lp, lt = colour_lab(p)[..., 0], colour_lab(t)[..., 0]
    assert M.brightness_ratio(p, t, space="lab")["value"] == pytest.approx(lp.mean() / lt.mean(), rel=1e-10)
    r = M.brightness_ratio(p, torch.zeros_like(t))
    assert math.isnan(r["value"])
    with pytest.raises(UnknownNameError):
        M.brightness_ratio(p, t, space="hsl")


def _lab_to_srgb_tensor(lab: np.ndarray) -> torch.Tensor:
    rgb = colour.XYZ_to_sRGB(colour.Lab_to_XYZ(lab))
    assert rgb.min() >= 0 and rgb.max() <= 1, "test colour out of gamut"
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)))


def _colour_hue(x: torch.Tensor) -> np.ndarray:
    return colour.Lab_to_LCHab(colour_lab(x))[..., 2]


def test_hue_shift_hand_case_wraps_through_zero():
    # GT hue 350°, prediction hue 10°: the shift is +20°, not -340°. L* 60, C* 30 (in gamut).
    # (colour-science's XYZ -> sRGB uses the standard's rounded inverse matrix, so the tensors'
    # hues are 350° and 10° to ~1e-3°; the exact expectation is taken from colour-science.)
    def lab(h):
        return [60.0, 30 * math.cos(math.radians(h)), 30 * math.sin(math.radians(h))]
    t = _lab_to_srgb_tensor(np.array([[lab(350.0)] * 4] * 3))
    p = _lab_to_srgb_tensor(np.array([[lab(10.0)] * 4] * 3))
    expected = float(((_colour_hue(p) - _colour_hue(t) + 180) % 360 - 180).mean())
    assert expected == pytest.approx(20.0, abs=0.01)
    r = M.hue_shift(p, t)
    assert r["pixels"] == 12 and r["excluded_fraction"] == 0.0
    assert r["mean_abs"] == pytest.approx(expected, abs=1e-9)
    assert r["p95"] == pytest.approx(expected, abs=1e-9)
    assert r["signed_mean"] == pytest.approx(expected, abs=1e-9)
    assert M.hue_shift(t, p)["signed_mean"] == pytest.approx(-expected, abs=1e-9)


def test_hue_shift_circular_mean_vs_arithmetic():
    # Shifts of +170° and -170° (= +190°): |Δh| mean 170, circular mean of the signed shifts is
    # 180 (the arithmetic mean, 0, would claim no drift at all).
    def lab(h, c=25.0):
        return [55.0, c * math.cos(math.radians(h)), c * math.sin(math.radians(h))]
    t = _lab_to_srgb_tensor(np.array([[lab(100.0), lab(100.0)]]))
    p = _lab_to_srgb_tensor(np.array([[lab(270.0), lab(290.0)]]))
    r = M.hue_shift(p, t)
    assert r["mean_abs"] == pytest.approx(170.0, abs=0.01)
    assert abs(r["signed_mean"]) == pytest.approx(180.0, abs=0.01)
    assert -180 < r["signed_mean"] <= 180


def test_hue_shift_matches_colour_science_with_floor():
    p, t = rand_img(50, 20, 20), rand_img(51, 20, 20)
    lp, lt = colour.Lab_to_LCHab(colour_lab(p)), colour.Lab_to_LCHab(colour_lab(t))
    m = np.random.default_rng(3).random((20, 20)) < 0.7
    chromatic = lt[..., 1] >= 10.0
    sel = m & chromatic
    d = (lp[..., 2] - lt[..., 2] + 180.0) % 360.0 - 180.0
    d = d[sel]
    r = M.hue_shift(p, t, mask=torch.from_numpy(m))
    assert r["pixels"] == sel.sum()
    assert r["excluded_fraction"] == pytest.approx((m & ~chromatic).sum() / m.sum(), abs=0)
    assert r["mean_abs"] == pytest.approx(np.abs(d).mean(), rel=1e-9)
    assert r["p95"] == pytest.approx(np.percentile(np.abs(d), 95), rel=1e-9)
    circ = math.degrees(math.atan2(np.sin(np.radians(d)).sum(), np.cos(np.radians(d)).sum()))
    assert r["signed_mean"] == pytest.approx(circ, abs=1e-9)
    # A higher floor excludes more, and only the GT decides.
    r40 = M.hue_shift(p, t, mask=torch.from_numpy(m), chroma_floor=40.0)
    assert r40["pixels"] == (m & (lt[..., 1] >= 40.0)).sum()


def test_hue_angle_delta_matches_colour_science_and_its_conventions():
    rng = np.random.default_rng(8)
    lab_p = rng.uniform([0, -120, -120], [100, 120, 120], (4000, 3))
    lab_t = rng.uniform([0, -120, -120], [100, 120, 120], (4000, 3))
    lab_p[:4, 1:] = [[0.0, 0.0], [-30.0, 0.0], [0.0, -25.0], [5.0, 5.0]]  # grey pred: hue 0 by convention
    lab_t[:4, 1:] = [[10.0, 10.0], [30.0, 0.0], [0.0, 25.0], [-5.0, -5.0]]  # exact opposites: +180
    h_p = colour.Lab_to_LCHab(lab_p)[:, 2]
    h_t = colour.Lab_to_LCHab(lab_t)[:, 2]
    h_p[0] = 0.0  # colour-science's hue of (0, 0) is also 0; made explicit
    ref = (h_p - h_t + 180.0) % 360.0 - 180.0
    ref[ref == -180.0] = 180.0  # the interval is (-180, 180]
    ours = M.hue_angle_delta(torch.from_numpy(lab_p.T), torch.from_numpy(lab_t.T), dim=0).numpy()
    assert np.abs(ours - ref).max() <= 1e-9
    assert ours[0] == pytest.approx(-45.0, abs=1e-12) and (ours[1:4] == 180.0).all()
    ab = M.hue_angle_delta(torch.from_numpy(lab_p.T[1:]), torch.from_numpy(lab_t.T[1:]), dim=0)
    assert torch.equal(ab, torch.from_numpy(ours))  # the (a*, b*) pair gives the same map
    with pytest.raises(ShapeError, match="hue_angle_delta"):
        M.hue_angle_delta(torch.zeros(4, 5), torch.zeros(4, 5), dim=0)


def test_hue_shift_counts_pixels_the_prediction_greys_out():
    t = rand_img(52, 12, 12)
    grey = t.mean(dim=0, keepdim=True).expand(3, -1, -1).contiguous()
    r_t = M.hue_shift(t, t)
    r = M.hue_shift(grey, t)
    assert r["pixels"] == r_t["pixels"] > 0  # inclusion depends on the GT only
    assert r["pred_low_chroma_fraction"] == 1.0 and r_t["pred_low_chroma_fraction"] == 0.0
    assert r_t["mean_abs"] == 0.0 and r_t["signed_mean"] == 0.0
    # Neutral target: nothing chromatic -> NaN with pixels = 0.
    e = M.hue_shift(t, grey)
    assert e["pixels"] == 0 and math.isnan(e["mean_abs"]) and e["excluded_fraction"] == 1.0
    e = M.hue_shift(t, t, mask=torch.zeros(12, 12, dtype=torch.bool))
    assert e["pixels"] == 0 and math.isnan(e["mean_abs"]) and math.isnan(e["excluded_fraction"])


# ----------------------------------------------------------------------------------------------
# Masked statistics never look at masked-out pixels
# ----------------------------------------------------------------------------------------------


def _all_masked_stats(p: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> list[float]:
    out = []
    out += list(M.summarize(M.delta_e_map(p, t), m).values())
    for space in ("hsv", "lab"):
        out += list(M.saturation_ratio(p, t, mask=m, space=space).values())
    for space in ("v", "lab"):
        out += list(M.brightness_ratio(p, t, mask=m, space=space).values())
    out += list(M.hue_shift(p, t, mask=m).values())
    out += M.psnr(p, t, mask=m, per_channel=True).tolist() + [float(M.psnr(p, t, mask=m))]
    out.append(float(M.ssim(p, t, mask=m)))
    return [float(v) for v in out]


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.booleans())
def test_masked_out_pixels_never_change_a_masked_statistic(seed, density, weighted):
    rng = np.random.default_rng(seed)
    h, w = 16, 15
    p = torch.from_numpy(rng.random((3, h, w)))
    t = torch.from_numpy(rng.random((3, h, w)))
    keep = rng.random((h, w)) < density
    m = torch.from_numpy(keep * rng.random((h, w)) if weighted else keep)
    out = torch.from_numpy(~keep)
    p2, t2 = p.clone(), t.clone()
    p2[:, out] = torch.from_numpy(rng.random((3, int(out.sum()))))
    t2[:, out] = torch.from_numpy(rng.random((3, int(out.sum()))))
    a, b = _all_masked_stats(p, t, m), _all_masked_stats(p2, t2, m)
    assert all(same(x, y) for x, y in zip(a, b)), (a, b)


# ----------------------------------------------------------------------------------------------
# PSNR and SSIM
# ----------------------------------------------------------------------------------------------


def test_psnr_matches_skimage():
    p, t = rand_img(60), rand_img(61)
    assert float(M.psnr(p, t)) == pytest.approx(peak_signal_noise_ratio(hwc(t), hwc(p), data_range=1.0), rel=1e-12)
    pc = M.psnr(p, t, per_channel=True)
    assert pc.shape == (3,)
    for c in range(3):
        assert float(pc[c]) == pytest.approx(peak_signal_noise_ratio(t[c].numpy(), p[c].numpy(), data_range=1.0), rel=1e-12)
    m = torch.from_numpy(np.random.default_rng(4).random((24, 20)) < 0.3)
    ref = peak_signal_noise_ratio(hwc(t)[m.numpy()], hwc(p)[m.numpy()], data_range=1.0)
    assert float(M.psnr(p, t, mask=m)) == pytest.approx(ref, rel=1e-12)
    assert float(M.psnr(p * 255, t * 255, data_range=255.0)) == pytest.approx(float(M.psnr(p, t)), rel=1e-12)


def test_psnr_batch_identical_and_empty():
    p, t = rand_img(62, n=3), rand_img(63, n=3)
    b = M.psnr(p, t)
    assert b.shape == (3,)
    for i in range(3):
        assert float(b[i]) == pytest.approx(peak_signal_noise_ratio(hwc(t[i]), hwc(p[i]), data_range=1.0), rel=1e-12)
    assert float(M.psnr(p, t, reduction="mean")) == pytest.approx(float(b.mean()), rel=1e-15)
    assert math.isinf(float(M.psnr(t[0], t[0])))
    assert math.isnan(float(M.psnr(p[0], t[0], mask=torch.zeros(24, 20, dtype=torch.bool))))


@pytest.mark.parametrize("h,w,seed", [(11, 11, 0), (16, 23, 1), (37, 40, 2), (64, 64, 3), (12, 90, 4), (300, 14, 5)])
def test_ssim_parity_with_skimage(h, w, seed):
    t = rand_img(seed, h, w)
    # Structured content: smooth gradient + noise, then a degraded prediction.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij")
    t = (0.5 * t + 0.25 * (xx + yy)).clamp(0, 1)
    p = (t + 0.1 * rand_img(seed + 100, h, w) - 0.05).clamp(0, 1)
    ref = structural_similarity(hwc(p), hwc(t), channel_axis=-1, **SSIM_KW)
    assert abs(float(M.ssim(p, t)) - ref) <= 1e-12
    assert abs(float(M.ssim(t, p)) - ref) <= 1e-12  # symmetric


def test_ssim_float32_and_batch():
    p, t = rand_img(70, 33, 29, n=3), rand_img(71, 33, 29, n=3)
    t[1] = (p[1] + 0.02).clamp(0, 1)
    ref = [structural_similarity(hwc(p[i]), hwc(t[i]), channel_axis=-1, **SSIM_KW) for i in range(3)]
    got = M.ssim(p, t)
    assert got.shape == (3,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    got32 = M.ssim(p.float(), t.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, atol=1e-5)
    assert float(M.ssim(p, t, reduction="mean")) == pytest.approx(np.mean(ref), abs=1e-12)
    # Flat target + faint noise: the case where E[x²] - E[x]² cancels in float32.
    flat = torch.full((3, 40, 50), 0.7, dtype=torch.float64)
    noisy = (flat + 0.01 * rand_img(75, 40, 50) - 0.005)
    ref_flat = structural_similarity(hwc(noisy), hwc(flat), channel_axis=-1, **SSIM_KW)
    assert abs(float(M.ssim(noisy.float(), flat.float())) - ref_flat) < 1e-5
    assert abs(float(M.ssim(noisy.float(), flat.float(), mask=torch.ones(40, 50))) - ref_flat) < 1e-5
    assert M.ssim(p.unsqueeze(0), t.unsqueeze(0)).shape == (1, 3)
    smap = M.ssim_map(p, t)
    assert smap.shape == (3, 3, 23, 19)
    _, full = structural_similarity(hwc(p[0]), hwc(t[0]), channel_axis=-1, full=True, **SSIM_KW)
    np.testing.assert_allclose(smap[0].numpy(), full[5:-5, 5:-5].transpose(2, 0, 1), atol=1e-12)


def test_ssim_identical_small_and_errors():
    t = rand_img(72, 20, 20)
    assert float(M.ssim(t, t)) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ShapeError, match="11x11"):
        M.ssim(t[:, :10], t[:, :10])
    with pytest.raises(ShapeError):
        M.ssim(t, t[:, :-1])
    with pytest.raises(UnknownNameError):
        M.ssim(t, t, reduction="max")


def test_ssim_differentiable():
    p = rand_img(73, 12, 13, n=2).requires_grad_()
    t = rand_img(74, 12, 13, n=2)
    m = torch.rand(2, 12, 13, dtype=torch.float64) > 0.3
    assert torch.autograd.gradcheck(lambda x: M.ssim(x, t), (p,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: M.ssim(x, t, mask=m), (p,), fast_mode=True)
    loss = 1 - M.ssim(p.float(), t.float(), reduction="mean")
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    q = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)  # flat, identical: zero variances
    M.ssim(q, q.detach().clone()).sum().backward()
    assert torch.isfinite(q.grad).all()


def _masked_ssim_bruteforce(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> float:
    """Normalised-convolution SSIM by explicit windows (x, y: (3, H, W); m: (H, W) weights)."""
    r, sigma = 5, 1.5
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    win = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    num = den = 0.0
    h, w = m.shape
    for c in range(3):
        for i in range(r, h - r):
            for j in range(r, w - r):
                if m[i, j] <= 0:
                    continue
                ww = win * m[i - r : i + r + 1, j - r : j + r + 1]
                ww = ww / ww.sum()
                a = x[c, i - r : i + r + 1, j - r : j + r + 1]
                b = y[c, i - r : i + r + 1, j - r : j + r + 1]
                ua, ub = (ww * a).sum(), (ww * b).sum()
                va, vb = (ww * (a - ua) ** 2).sum(), (ww * (b - ub) ** 2).sum()
                cov = (ww * (a - ua) * (b - ub)).sum()
                s = (2 * ua * ub + c1) * (2 * cov + c2) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
                num += m[i, j] * s
                den += m[i, j]
    return num / den


@pytest.mark.parametrize("weighted,strip", [(False, 256), (True, 256), (True, 3)])
def test_masked_ssim_normalised_convolution(weighted, strip, monkeypatch):
    monkeypatch.setattr("colorfid.metrics.structural._SSIM_STRIP", strip)  # strip=3: several strips of output rows
    rng = np.random.default_rng(5)
    p, t = rand_img(80, 18, 17), rand_img(81, 18, 17)
    keep = rng.random((18, 17)) < 0.6
    mask = keep * rng.random((18, 17)) if weighted else keep.astype(np.float64)
    m = torch.from_numpy(mask) if weighted else torch.from_numpy(keep)
    ref = _masked_ssim_bruteforce(p.numpy(), t.numpy(), mask)
    assert float(M.ssim(p, t, mask=m)) == pytest.approx(ref, abs=1e-12)
    # Masked-out pixels are not even read: NaN there changes nothing.
    p_nan = p.clone()
    p_nan[:, torch.from_numpy(mask <= 0)] = float("nan")
    assert float(M.ssim(p_nan, t, mask=m)) == float(M.ssim(p, t, mask=m))
    # All-ones mask = unmasked SSIM; empty mask (within the valid region) = NaN.
    assert float(M.ssim(p, t, mask=torch.ones(18, 17, dtype=torch.bool))) == pytest.approx(float(M.ssim(p, t)), abs=1e-13)
    border_only = torch.ones(18, 17, dtype=torch.bool)
    border_only[5:-5, 5:-5] = False
    assert math.isnan(float(M.ssim(p, t, mask=border_only)))


# ----------------------------------------------------------------------------------------------
# Health flags
# ----------------------------------------------------------------------------------------------


def test_health_flags_hand_case():
    p = torch.full((3, 4, 5), 0.5, dtype=torch.float64)  # grey everywhere
    p[0, 0, 0] = float("nan")
    p[1, 0, 1] = float("inf")
    p[2, 0, 2] = -0.5
    p[0, 1, 0] = 1.5
    f = M.health_flags(p)  # a NaN prediction is reported, never raised
    assert f["nonfinite_count"] == 2
    assert f["out_of_range_frac"] == pytest.approx(3 / 60)  # inf, -0.5, 1.5
    # Sanitised (NaN -> 0, Inf -> 1, clamp): the four touched pixels have HSV S 1, 0.5, 1, 0.5.
    assert f["mean_saturation"] == pytest.approx(3 / 20) and f["low_color"] == "ok"
    assert f["grey_fraction"] == pytest.approx(16 / 20) and f["grey_collapse"] == f["grey_fraction"]
    assert M.health_flags(torch.full((3, 4, 5), 0.5))["low_color"] == "critical"
    t = p.clone()
    with pytest.raises(RangeError, match="target"):
        M.health_flags(p, t)


def test_health_flags_grey_collapse_and_low_color_levels():
    t = torch.zeros(3, 2, 5, dtype=torch.float64)
    t[:, 0] = torch.tensor([0.8, 0.2, 0.2]).view(3, 1)  # 5 red pixels (S = 0.75)
    t[:, 1] = 0.5  # 5 grey pixels
    p = t.clone()
    p[:, 0, :2] = 0.4  # two of the five red pixels collapse to grey
    p[:, 0, 2] = torch.tensor([0.41, 0.40, 0.395])  # spread 0.015 <= 0.02: grey too
    f = M.health_flags(p, t)
    assert f["grey_collapse"] == pytest.approx(3 / 5) and f["grey_fraction"] == pytest.approx(8 / 10)
    assert f["target_mean_saturation"] == pytest.approx(0.75 / 2)
    # Mean HSV saturation thresholds: S = 2 * 0.75 / 10 = 0.15 -> ok; a grey-ish image -> low/critical.
    assert f["mean_saturation"] == pytest.approx((2 * 0.75 + 0.015 / 0.41) / 10) and f["low_color"] == "ok"
    def flat(s):  # HSV S = s everywhere, by hand
        return torch.tensor([1.0, 1.0 - s, 1.0 - s], dtype=torch.float64).view(3, 1, 1).expand(3, 4, 4).contiguous()
    assert M.health_flags(flat(0.11))["low_color"] == "ok"
    assert M.health_flags(flat(0.09))["low_color"] == "low"
    assert M.health_flags(flat(0.03))["low_color"] == "critical"
    assert M.health_flags(flat(0.09), protocol=M.MetricProtocol(low_color_min=0.05))["low_color"] == "ok"


# ----------------------------------------------------------------------------------------------
# The whole-image chroma distribution (colourization): chroma_ratio, hue_spread_ratio, hue_collapse
# ----------------------------------------------------------------------------------------------


def lab_image(lab: np.ndarray) -> torch.Tensor:
    """An sRGB (3, H, W) float64 tensor from CIELAB (H, W, 3) through colour-science: Lab_to_XYZ,
    the exact inverse of its sRGB RGB->XYZ matrix (its printed XYZ->RGB matrix is the standard's
    4-decimal one, which does not round-trip), and its sRGB encoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = np.linalg.inv(colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ)
        rgb = colour.cctf_encoding(np.clip(colour.Lab_to_XYZ(lab) @ m.T, 0, 1), function="sRGB")
        lin = colour.Lab_to_XYZ(lab) @ m.T
    assert lin.min() > -1e-9 and lin.max() < 1 + 1e-9, "test colours must lie inside the sRGB gamut"
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def lch_scene(hues, chroma=20.0, h=16, w=48) -> np.ndarray:
    """CIELAB (h, w, 3): vertical bands of the given hues at one chroma, L* ramping 50-70 down
    the rows (the same lightness profile in every band)."""
    lab = np.empty((h, w, 3))
    lab[..., 0] = np.linspace(50.0, 70.0, h)[:, None]
    band = np.repeat(np.radians(np.asarray(hues, dtype=np.float64)), w // len(hues))
    lab[..., 1], lab[..., 2] = chroma * np.cos(band), chroma * np.sin(band)
    return lab


def grey_of_lab(lab: np.ndarray) -> torch.Tensor:
    """R = G = B = the sRGB encoding of each pixel's CIE Y (from L*, CIE 015): the grey input."""
    y = ((lab[..., 0] + 16.0) / 116.0) ** 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = colour.cctf_encoding(y, function="sRGB")
    return torch.from_numpy(np.repeat(v[None], 3, axis=0).copy())


@pytest.mark.parametrize("hues, spread", [
    ([40.0], 0.0),                      # one hue: no spread
    ([30.0, 210.0], 1.0),               # two hues 180° apart at equal chroma: the resultant cancels
    ([10.0, 130.0, 250.0], 1.0),        # three evenly spread hues
    ([0.0, 90.0, 180.0, 270.0], 1.0),   # four
    ([0.0, 90.0], 1.0 - math.cos(math.pi / 4)),  # two hues 90° apart: 1 - |mean of two unit vectors|
])
def test_hue_spread_hand_cases(hues, spread):
    img = lab_image(lch_scene(hues))
    m = M.chroma_moments(img)
    assert m.c == pytest.approx(20.0, rel=1e-9)
    assert M.hue_spread(m, 2.3) == pytest.approx(spread, abs=1e-9)
    assert M.resultant_length(m, 2.3) == pytest.approx(1.0 - spread, abs=1e-9)
    if len(hues) == 1:
        assert M.mean_hue(m) == pytest.approx(hues[0], abs=1e-7)


def test_whole_image_ratios_hand_cases():
    C = M.ChromaMoments
    gt = C(10.0, 5.0, 0.0)                      # R̄ 0.5: half the chroma is one common hue
    f = 2.3
    assert M.chroma_ratio(C(4.0, 1.0, 1.0), gt, f) == 0.4
    assert M.hue_spread_ratio(gt, gt, f) == 1.0 and M.hue_collapse(gt, gt, f) == 0.0
    assert M.hue_collapse(C(10.0, 7.5, 0.0), gt, f) == pytest.approx(0.5)    # half-way to one hue
    assert M.hue_collapse(C(10.0, 0.0, -2.5), gt, f) == pytest.approx(-0.5)  # half the common hue lost
    assert M.hue_collapse(C(6.0, 0.0, 6.0), gt, f) == 1.0      # a uniform tint, whatever its hue
    assert M.hue_spread_ratio(C(6.0, 0.0, 6.0), gt, f) == 0.0
    grey = C(0.0, 0.0, 0.0)
    assert (M.chroma_ratio(grey, gt, f), M.hue_spread_ratio(grey, gt, f), M.hue_collapse(grey, gt, f)) == (0.0, 0.0, -1.0)
    assert M.resultant_length(grey, 0.0) == 0.0 and M.hue_spread(grey, 0.0) == 0.0 and math.isnan(M.mean_hue(grey))
    # under the floor a faint tint counts by its colourfulness: R̄ = 1 / 2.3
    assert M.resultant_length(C(1.0, 1.0, 0.0), f) == pytest.approx(1 / 2.3) and M.hue_spread(C(1.0, 1.0, 0.0), f) == 0.0
    # NaN, never a vacuous 1: a GT without colour, or without hue spread (dispersed chroma C̄ - |m| < floor)
    for fn in (M.chroma_ratio, M.hue_spread_ratio, M.hue_collapse):
        assert math.isnan(fn(C(2.0, 0.0, 0.0), C(2.0, 0.0, 0.0), f)), fn.__name__  # under the floor
        assert math.isnan(fn(grey, grey, f)) and math.isnan(fn(grey, grey, 0.0)), fn.__name__  # no division by 0
    one_hue = C(20.0, 19.0, 0.0)
    assert M.chroma_ratio(one_hue, one_hue, f) == 1.0
    assert math.isnan(M.hue_spread_ratio(one_hue, one_hue, f)) and math.isnan(M.hue_collapse(one_hue, one_hue, f))
    assert M.hue_spread_ratio(one_hue, one_hue, 0.5) == 1.0  # a lower floor admits it


def test_colourization_failures_are_told_apart():
    """Grey output, a uniform sepia tint over the GT's lightness, and a vivid colourization
    with every hue wrong (turned 120°) read differently on the three keys."""
    gt_lab = lch_scene([20.0, 60.0, 200.0, 290.0], chroma=20.0, h=24, w=48)  # hues with a common direction
    gt = lab_image(gt_lab)
    sepia_lab = gt_lab.copy()
    sepia_lab[..., 1:] = (6.0, 18.0)
    wrong_lab = lch_scene([140.0, 180.0, 320.0, 50.0], chroma=20.0, h=24, w=48)
    keys = ("chroma_ratio", "hue_spread_ratio", "hue_collapse")
    got = {name: [M.image_metrics(x, gt)[k] for k in keys]
           for name, x in (("gt", gt), ("grey", grey_of_lab(gt_lab)), ("sepia", lab_image(sepia_lab)),
                           ("wrong", lab_image(wrong_lab)))}
    assert got["gt"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-12)
    cr, sr, co = got["grey"]
    assert cr < 1e-3 and sr < 1e-3 and co < -0.9          # no colour, no hue
    cr, sr, co = got["sepia"]
    assert cr == pytest.approx(math.hypot(6, 18) / 20.0, rel=1e-6) and sr < 1e-6 and co > 1 - 1e-6  # colour, one hue
    cr, sr, co = got["wrong"]
    assert cr == pytest.approx(1.0, rel=1e-6) and sr == pytest.approx(1.0, rel=1e-6) and abs(co) < 1e-6
    assert M.hue_shift(lab_image(wrong_lab), gt)["mean_abs"] == pytest.approx(120.0, abs=1e-6)  # the hue statistics see it
    assert M.mean_hue(M.chroma_moments(lab_image(sepia_lab))) == pytest.approx(math.degrees(math.atan2(18, 6)), abs=1e-6)
    # where the GT's hues cancel exactly (R̄ = 0) grey is as "uncommitted" as the GT: hue_collapse ~0,
    # and chroma_ratio and hue_spread_ratio (both 0) name the failure
    even = lch_scene([20.0, 110.0, 200.0, 290.0])
    m = M.image_metrics(grey_of_lab(even), lab_image(even))
    assert m["chroma_ratio"] < 1e-3 and m["hue_spread_ratio"] < 1e-3 and abs(m["hue_collapse"]) < 0.01


# ----------------------------------------------------------------------------------------------
# image_metrics
# ----------------------------------------------------------------------------------------------


def test_image_metrics_identity():
    t = rand_img(90, 16, 16)
    m = M.image_metrics(t, t)
    for k in ("de00_mean", "de00_p95", "de00_max", "de00_hc_p95", "hue_shift_hc_mean", "hue_drift_hc",
              "out_of_range_frac", "nonfinite_count", "grey_collapse"):
        assert m[k] == 0.0, k
    for k in ("sat_ratio", "sat_ratio_hc", "chroma_ratio_hc", "brightness_ratio", "chroma_ratio", "hue_spread_ratio"):
        assert m[k] == pytest.approx(1.0, abs=1e-15), k
    assert m["hue_collapse"] == 0.0
    assert m["ssim"] == pytest.approx(1.0, abs=1e-12) and math.isinf(m["psnr"])
    assert all(isinstance(v, float) for v in m.values())


@pytest.mark.parametrize("strip", [1 << 20, 50])
def test_image_metrics_matches_oracles(strip, monkeypatch):
    monkeypatch.setattr("colorfid.metrics.image._STRIP_PIXELS", strip)  # 50: strips of 2.3 rows
    p, t = rand_img(91, 20, 22), rand_img(92, 20, 22)
    m = M.image_metrics(p, t, fused=False)
    assert_metrics_match_oracles(m, p, t)
    m32 = M.image_metrics(p.float(), t.float(), dtype=torch.float32)
    for k in m:
        assert m32[k] == pytest.approx(m[k], rel=2e-3, abs=2e-3), k


def test_whole_image_ratios_need_a_meaningful_denominator():
    """sat_ratio / brightness_ratio are ratios of two means: on a near-grey (near-black) GT a
    few hundredths of saturation (value) read as a factor. Under the protocol's ratio_floor
    (0.10 = low_color_min) they are NaN and sat_diff / brightness_diff say what happened; the
    oracle is scikit-image's HSV on the same pixels."""
    g = torch.Generator().manual_seed(5)
    base = 0.3 + 0.4 * torch.rand(1, 24, 24, generator=g, dtype=torch.float64)
    tint = torch.tensor([1.0, 0.985, 0.97], dtype=torch.float64).view(3, 1, 1)
    gt = (base * tint).clamp(0, 1)  # mean S ~ 0.03: a grey room
    pred = (base * torch.tensor([1.0, 0.975, 0.955], dtype=torch.float64).view(3, 1, 1)).clamp(0, 1)
    s_gt, s_pred = rgb2hsv(hwc(gt))[..., 1], rgb2hsv(hwc(pred))[..., 1]
    assert s_gt.mean() < 0.10 and s_pred.mean() / s_gt.mean() > 1.4  # the ill-conditioned "x1.5"
    m = M.image_metrics(pred, gt)
    assert math.isnan(m["sat_ratio"])
    assert m["sat_diff"] == pytest.approx(s_pred.mean() - s_gt.mean(), rel=1e-10)
    assert m["brightness_ratio"] == pytest.approx(hwc(pred).max(-1).mean() / hwc(gt).max(-1).mean(), rel=1e-12)
    # the floor is the protocol's: lowered under the GT's mean saturation, the ratio is back
    low = M.image_metrics(pred, gt, protocol=M.MetricProtocol(ratio_floor=0.01))
    assert low["sat_ratio"] == pytest.approx(s_pred.mean() / s_gt.mean(), rel=1e-12)
    # a near-black GT (mean V 0.05): brightness_ratio NaN, brightness_diff defined
    dark_gt, dark_pred = gt * (0.05 / 0.5), gt * (0.07 / 0.5)
    d = M.image_metrics(dark_pred, dark_gt)
    assert math.isnan(d["brightness_ratio"])
    assert d["brightness_diff"] == pytest.approx(hwc(dark_pred).max(-1).mean() - hwc(dark_gt).max(-1).mean(), rel=1e-10)
    # the hc ratios need no floor: their masks keep GT pixels with S >= hc_saturation
    assert M.MetricProtocol().ratio_floor == 0.10 == M.MetricProtocol().low_color_min


def assert_metrics_match_oracles(m: dict[str, float], p: torch.Tensor, t: torch.Tensor) -> None:
    """image_metrics' values of (p, t) against colour-science, scikit-image and numpy
    (tests/test_kernels.py runs it on the fused path)."""
    de = colour.delta_E(colour_lab(p), colour_lab(t), method="CIE 2000")
    np.testing.assert_allclose(
        [m["de00_mean"], m["de00_median"], m["de00_p95"], m["de00_p99"], m["de00_max"]],
        [de.mean(), np.median(de), np.percentile(de, 95), np.percentile(de, 99), de.max()], rtol=1e-9)
    hc = rgb2hsv(hwc(t))[..., 1] >= 0.5
    assert m["de00_hc_p95"] == pytest.approx(np.percentile(de[hc], 95), rel=1e-9)
    assert m["hc_fraction"] == pytest.approx(hc.mean())
    sp, stt = rgb2hsv(hwc(p))[..., 1], rgb2hsv(hwc(t))[..., 1]
    assert m["sat_ratio_hc"] == pytest.approx(sp[hc].mean() / stt[hc].mean(), rel=1e-12)
    lp, lt = colour.Lab_to_LCHab(colour_lab(p)), colour.Lab_to_LCHab(colour_lab(t))
    chromatic = hc & (lt[..., 1] >= 10.0)
    dh = np.abs((lp[..., 2] - lt[..., 2] + 180.0) % 360.0 - 180.0)[chromatic]
    assert m["hue_shift_hc_mean"] == pytest.approx(dh.mean(), rel=1e-9)
    assert m["hue_shift_hc_p95"] == pytest.approx(np.percentile(dh, 95), rel=1e-9)
    hcc = lt[..., 1] >= 40.0
    assert m["chroma_ratio_hc"] == pytest.approx(lp[..., 1][hcc].mean() / lt[..., 1][hcc].mean(), rel=1e-10)
    assert m["brightness_ratio"] == pytest.approx(hwc(p).max(-1).mean() / hwc(t).max(-1).mean(), rel=1e-12)
    assert m["brightness_diff"] == pytest.approx(hwc(p).max(-1).mean() - hwc(t).max(-1).mean(), rel=1e-10, abs=1e-14)
    assert m["sat_diff"] == pytest.approx(sp.mean() - stt.mean(), rel=1e-10, abs=1e-14)
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(hwc(t), hwc(p), data_range=1.0), rel=1e-12)
    assert m["ssim"] == pytest.approx(structural_similarity(hwc(p), hwc(t), channel_axis=-1, **SSIM_KW), abs=1e-12)
    assert m["mean_saturation"] == pytest.approx(sp.mean(), rel=1e-12)
    spread_p, spread_t = np.ptp(hwc(p), axis=-1), np.ptp(hwc(t), axis=-1)
    colourful = spread_t > 0.02
    want = ((spread_p <= 0.02) & colourful).sum() / colourful.sum() if colourful.any() else float("nan")
    assert same(m["grey_collapse"], float(want)) or m["grey_collapse"] == pytest.approx(want, rel=1e-12)
    # the whole-image chroma distribution, from colour-science's a*, b* (formulas written out here)
    lab_p, lab_t = colour_lab(p), colour_lab(t)
    cp, ct = np.hypot(lab_p[..., 1], lab_p[..., 2]).mean(), np.hypot(lab_t[..., 1], lab_t[..., 2]).mean()
    rp = np.hypot(lab_p[..., 1].mean(), lab_p[..., 2].mean()) / max(cp, 2.3)
    rt = np.hypot(lab_t[..., 1].mean(), lab_t[..., 2].mean()) / ct
    assert ct >= 2.3 and ct * (1 - rt) >= 2.3  # random colour images: every key defined
    assert m["chroma_ratio"] == pytest.approx(cp / ct, rel=1e-10)
    assert m["hue_spread_ratio"] == pytest.approx((cp / max(cp, 2.3) - rp) / (1 - rt), rel=1e-9)
    want = (rp - rt) / (1 - rt) if rp >= rt else (rp - rt) / rt
    assert m["hue_collapse"] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_image_metrics_bad_prediction_is_reported_not_raised():
    p, t = rand_img(93, 16, 16), rand_img(94, 16, 16)
    bad = p.clone()
    bad[0, 0, 0] = float("nan")
    bad[1, 3, 3] = float("-inf")
    bad[2, 5, 5] = 1.7
    m = M.image_metrics(bad, t)
    assert m["nonfinite_count"] == 2.0 and m["out_of_range_frac"] == pytest.approx(2 / (3 * 256))
    # Everything else is computed on the sanitised prediction (NaN, -Inf -> 0; clamp to [0, 1]).
    clean = p.clone()
    clean[0, 0, 0] = 0.0
    clean[1, 3, 3] = 0.0
    clean[2, 5, 5] = 1.0
    ref = M.image_metrics(clean, t)
    for k in m:
        if k not in ("nonfinite_count", "out_of_range_frac"):
            assert same(m[k], ref[k]), k
    with pytest.raises(RangeError, match="target"):
        M.image_metrics(t, bad)


def test_image_metrics_shapes_and_empty_masks():
    p, t = rand_img(95, n=2), rand_img(96, n=2)
    with pytest.raises(ShapeError, match="one image"):
        M.image_metrics(p, t)
    one = M.image_metrics(p[:1], t[:1])
    assert one == M.image_metrics(p[0], t[0])
    with pytest.raises(ShapeError):
        M.image_metrics(p[0], t[0, :, :-1])
    with pytest.raises(DTypeError):
        M.image_metrics((p[0] * 255).to(torch.uint8), t[0])
    with pytest.raises(ShapeError):
        M.saturation_ratio(p, t)
    # Neutral target: every hc statistic is NaN, never 1.0; tiny image: SSIM NaN.
    grey = t[0, :1].expand(3, -1, -1).contiguous()
    m = M.image_metrics(p[0], grey)
    for k in ("de00_hc_p95", "sat_ratio", "sat_ratio_hc", "chroma_ratio_hc", "hue_shift_hc_mean",
              "hue_shift_hc_p95", "hue_drift_hc", "chroma_ratio", "hue_spread_ratio", "hue_collapse"):
        assert math.isnan(m[k]), k
    assert m["hc_fraction"] == 0.0 and math.isnan(m["grey_collapse"])
    assert math.isnan(M.image_metrics(p[0, :, :8, :8], t[0, :, :8, :8])["ssim"])
