"""Colour statistics of one prediction against its ground truth: ΔE maps, the high-chroma mask,
saturation / brightness ratios, the hue shift, and the whole-image colour distribution that
names the colourization failures (grey / sepia averaging: :func:`chroma_ratio`,
:func:`hue_spread_ratio`, :func:`hue_collapse`).

Masks are functions of the ground truth only, never of the prediction, so no statistic improves
by making the prediction worse. One image ``(3, H, W)`` (or ``(1, 3, H, W)``) per call, except
for the tensor-valued :func:`delta_e_map` and :func:`high_chroma_mask` (any leading batch dims).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .._select import above, nonzero, where
from ..color import check_srgb, chroma, hsv_saturation, safe_hypot, srgb_to_lab
from ..difference import delta_e_76, delta_e_94, delta_e_2000
from ..errors import ShapeError, UnknownNameError
from ._checks import acc_dtype, check_image, check_mask, clamped_srgb, one_image, pair_one
from .protocol import MetricProtocol, as_protocol
from .statistics import NAN, quantiles, ratio, select, wmean

__all__ = ["delta_e_map", "high_chroma_mask", "saturation_ratio", "brightness_ratio", "hue_angle_delta", "hue_shift",
           "hue_stats", "ChromaMoments", "chroma_moments", "resultant_length", "hue_spread", "mean_hue", "chroma_ratio",
           "hue_spread_ratio", "hue_collapse"]


_FORMULAS = ("76", "94", "2000")


def delta_e_map(
    pred: Tensor, target: Tensor, *, formula: str = "2000", dim: int = -3, fused: bool = False
) -> Tensor:
    """Per-pixel colour difference between two sRGB images, channel dim removed.

    Both images are validated with :func:`colorfid.color.check_srgb` (float, 3 channels, finite,
    in [0, 1] up to its tolerance), converted with :func:`colorfid.color.srgb_to_lab` (D65/2°)
    and compared with ``formula``: ``"2000"`` CIEDE2000 (CIE 142-2001, Sharma et al. 2005;
    ``fused`` passes through to :func:`colorfid.difference.delta_e_2000`), ``"94"`` CIE94
    graphic arts (CIE 116-1995, with the *target* as the reference colour) or ``"76"`` CIE76
    (Euclidean ΔE*ab). Any leading batch dims. Result in ΔE units, >= 0. Differentiable.
    """
    key = str(formula).lower().removeprefix("ciede").removeprefix("cie")
    if key not in _FORMULAS:
        raise UnknownNameError(f"delta_e_map: unknown formula {formula!r}; known: {', '.join(_FORMULAS)}")
    if pred.shape != target.shape:
        raise ShapeError(f"delta_e_map: pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    lab_p = srgb_to_lab(check_srgb(pred, dim=dim, name="delta_e_map: pred"), dim=dim, check=False)
    lab_t = srgb_to_lab(check_srgb(target, dim=dim, name="delta_e_map: target"), dim=dim, check=False)
    if lab_p.dtype != lab_t.dtype:
        common = torch.promote_types(lab_p.dtype, lab_t.dtype)
        lab_p, lab_t = lab_p.to(common), lab_t.to(common)
    if key == "2000":
        return delta_e_2000(lab_p, lab_t, dim=dim, fused=fused)
    if key == "94":
        return delta_e_94(lab_t, lab_p, dim=dim)
    return delta_e_76(lab_p, lab_t, dim=dim)


def high_chroma_mask(
    target: Tensor,
    *,
    protocol: MetricProtocol | None = None,
    space: Literal["hsv", "lab"] = "hsv",
    threshold: float | None = None,
) -> Tensor:
    """Boolean mask of the strongly coloured pixels of a ground-truth sRGB image.

    ``space="hsv"``: HSV saturation S = (max - min) / max (Smith 1978) >= ``threshold``
    (default ``protocol.hc_saturation`` = 0.5; S in [0, 1], 0 at black).
    ``space="lab"``: CIELAB chroma C*ab = sqrt(a*² + b*²) >= ``threshold`` (default
    ``protocol.hc_chroma`` = 40, CIE units; D65/2°).

    HSV S is cheap and what image editors show, but it is large on very dark pixels with tiny
    channel differences; C*ab is perceptual and ignores those. Any leading batch dims;
    returns ``bool`` of shape ``target.shape`` without the channel dim. The mask depends only
    on the target, so it needs no gradient (losses cast it to float to weight pixels).
    """
    p = as_protocol(protocol)
    target = clamped_srgb(check_image(target, "high_chroma_mask: target"), "high_chroma_mask: target")
    if space == "hsv":
        thr = p.hc_saturation if threshold is None else float(threshold)
        return hsv_saturation(target, check=False) >= thr
    if space == "lab":
        thr = p.hc_chroma if threshold is None else float(threshold)
        return chroma(srgb_to_lab(target, check=False)) >= thr
    raise UnknownNameError(f"high_chroma_mask: unknown space {space!r}; known: hsv, lab")


def _ratio_of_means(p_map: Tensor, t_map: Tensor, w: Tensor | None) -> dict[str, float | int]:
    pm, n = wmean(p_map, w)
    tm, _ = wmean(t_map, w)
    return {"value": ratio(pm, tm), "pixels": n, "pred_mean": pm, "target_mean": tm}


def saturation_ratio(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    space: Literal["hsv", "lab"] = "hsv",
) -> dict[str, float | int]:
    """Ratio of (weighted) mean saturations, prediction over ground truth, on the masked pixels.

    ``space="hsv"``: HSV S = (max - min) / max in [0, 1] (Smith 1978). ``space="lab"``: CIELAB
    chroma C*ab (D65/2°, CIE units). ``value = mean_mask(S_pred) / mean_mask(S_gt)``: 1 is
    faithful, < 1 washed out, > 1 over-saturated. Pass ``mask=high_chroma_mask(target)`` for the
    statistic that exposes washed-out coloured surfaces (``sat_ratio_hc``).

    Returns ``{"value", "pixels", "pred_mean", "target_mean"}``; ``value`` is NaN for an empty
    mask (``pixels = 0``) or when the GT mean is 0 (a neutral target has no saturation to keep).
    One image (3, H, W); inputs validated with :func:`colorfid.color.check_srgb`.
    """
    pred, target = pair_one(pred, target, "saturation_ratio")
    w = check_mask(mask, target.shape[-2:], "saturation_ratio")
    if space == "hsv":
        sp, st = hsv_saturation(pred, check=False), hsv_saturation(target, check=False)
    elif space == "lab":
        sp, st = chroma(srgb_to_lab(pred, check=False)), chroma(srgb_to_lab(target, check=False))
    else:
        raise UnknownNameError(f"saturation_ratio: unknown space {space!r}; known: hsv, lab")
    return _ratio_of_means(sp, st, w)


def brightness_ratio(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    space: Literal["v", "lab"] = "v",
) -> dict[str, float | int]:
    """Ratio of (weighted) mean brightness, prediction over ground truth, on the masked pixels.

    ``space="v"``: HSV value V = max(R, G, B) of the encoded sRGB (Smith 1978), in [0, 1].
    ``space="lab"``: CIE lightness L* (D65/2°), in [0, 100]. Returns ``{"value", "pixels",
    "pred_mean", "target_mean"}``; NaN for an empty mask or a black target. One image.
    """
    pred, target = pair_one(pred, target, "brightness_ratio")
    w = check_mask(mask, target.shape[-2:], "brightness_ratio")
    if space == "v":
        bp, bt = pred.amax(dim=-3), target.amax(dim=-3)
    elif space == "lab":
        bp, bt = srgb_to_lab(pred, check=False)[0], srgb_to_lab(target, check=False)[0]
    else:
        raise UnknownNameError(f"brightness_ratio: unknown space {space!r}; known: v, lab")
    return _ratio_of_means(bp, bt, w)


def hue_angle_delta(ab_pred: Tensor, ab_target: Tensor, *, dim: int = -3) -> Tensor:
    """Per-pixel hue-angle difference Δh = h_pred - h_target in degrees, wrapped into (-180, 180].

    ``ab_pred``, ``ab_target``: CIELAB tensors (3 channels along ``dim``: L*, a*, b*) or their
    (a*, b*) pair (2 channels); the channel dim is removed. h_ab = atan2(b*, a*) (CIE 015:2018
    §8.2.2), 0 for a zero-chroma colour as in :func:`colorfid.color.lab_to_lch`. Computed as the
    signed angle between the two chroma vectors, ``atan2(a_t b_p - b_t a_p, a_t a_p + b_t b_p)``:
    one ``atan2`` and no difference of two rounded absolute angles (exact opposites give +180).
    Not a CIEDE2000 ΔH (that is a chroma-weighted distance, this is an angle). Inference only.
    """
    with torch.no_grad():
        n = ab_pred.shape[dim]
        if n not in (2, 3) or ab_target.shape != ab_pred.shape:
            raise ShapeError(
                f"hue_angle_delta: expected two tensors of one shape with 2 (a*, b*) or 3 (L*, a*, b*) "
                f"channels in dim {dim}, got {tuple(ab_pred.shape)} and {tuple(ab_target.shape)}"
            )
        ap, bp = ab_pred.unbind(dim)[n - 2 :]
        at, bt = ab_target.unbind(dim)[n - 2 :]
        zp, zt = nonzero(ap.abs() + bp.abs()), nonzero(at.abs() + bt.abs())
        ap, bp = where(zp, ap, torch.ones_like(ap)), bp * zp  # zero chroma: hue 0, i.e. (1, 0)
        at, bt = where(zt, at, torch.ones_like(at)), bt * zt
        d = torch.atan2(at * bp - bt * ap, at * ap + bt * bp) * (180.0 / math.pi)
        return d + 360.0 * (1.0 - above(d, -180.0))  # -180 -> +180


def _hue_delta(
    lab_p: Tensor, lab_t: Tensor, c_t: Tensor, w: Tensor | None, floor: float
) -> tuple[Tensor, Tensor, Tensor | None]:
    """On the pixels with weight > 0 and GT chroma ``c_t`` >= ``floor`` of (3, ...) Lab maps:
    Δh (:func:`hue_angle_delta`, degrees), the prediction's chroma there, and their weights
    (None when unweighted). Hue differences are computed for those pixels only."""
    sel = c_t >= floor if w is None else (w > 0) & (c_t >= floor)
    idx = sel.reshape(-1).nonzero().squeeze(1)
    ws = None if w is None or w.dtype == torch.bool else w.reshape(-1)[idx]
    acc = acc_dtype(lab_t.device)
    ab_p = lab_p.reshape(3, -1)[1:, idx].to(acc)
    ab_t = lab_t.reshape(3, -1)[1:, idx].to(acc)
    return hue_angle_delta(ab_p, ab_t, dim=0), safe_hypot(ab_p[0], ab_p[1]), ws


def hue_stats(dh: Tensor, pred_low: Tensor, ww: Tensor | None, considered: int) -> dict[str, float | int]:
    """Hue statistics of the hue differences ``dh`` (degrees, see :func:`_hue_delta`);
    ``pred_low`` flags the pixels where the prediction's chroma is under the floor;
    ``considered`` is the number of pixels the mask selected before the chroma floor."""
    n = int(dh.numel())
    excluded = NAN if considered == 0 else (considered - n) / considered
    if n == 0:
        return {"mean_abs": NAN, "p95": NAN, "signed_mean": NAN, "pixels": 0,
                "excluded_fraction": excluded, "pred_low_chroma_fraction": NAN}
    ww = None if ww is None else ww.to(dh.dtype)
    ad = dh.abs()
    mean_abs, _ = wmean(ad, ww)
    p95 = quantiles(*select(ad, ww), [0.95])[0]
    rad = dh * (math.pi / 180.0)
    sin, cos = torch.sin(rad), torch.cos(rad)
    if ww is not None:
        sin, cos = sin * ww, cos * ww
    s, c = float(sin.sum()), float(cos.sum())
    signed = math.degrees(math.atan2(s, c)) if (s != 0 or c != 0) else 0.0
    if signed <= -180.0:
        signed = 180.0
    low, _ = wmean(pred_low.to(dh.dtype), ww)
    return {"mean_abs": mean_abs, "p95": p95, "signed_mean": signed, "pixels": n,
            "excluded_fraction": excluded, "pred_low_chroma_fraction": low}


def hue_shift(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    chroma_floor: float | None = None,
    protocol: MetricProtocol | None = None,
) -> dict[str, float | int]:
    """Circular CIELAB hue-angle shift, in degrees, on the chromatic pixels of the target.

    Hue h_ab = atan2(b*, a*) (CIE 015:2018 §8.2.2, D65/2°) of both images;
    Δh = h_pred - h_gt wrapped into (-180, 180] (a hue difference, not CIEDE2000's ΔH).

    Pixels considered: those selected by ``mask`` (all if None) **whose GT chroma C*ab is at
    least** ``chroma_floor`` (default ``protocol.hue_chroma_floor`` = 10). The prediction's chroma
    does not decide inclusion: a pixel that should be coloured stays counted when the prediction
    greys it out (its hue is then erratic, and large, which is the truth about that pixel); a
    rule using the prediction could be gamed by desaturating. ``pred_low_chroma_fraction`` says
    how many counted pixels the prediction left under the floor; ``saturation_ratio`` measures
    the greying itself.

    Returns ``mean_abs`` (weighted mean of |Δh|, in [0, 180]), ``p95`` (of |Δh|, as
    :func:`summarize`), ``signed_mean`` (the circular mean of Δh, atan2(Σ w sin Δh, Σ w cos Δh),
    in (-180, 180]: the systematic drift, e.g. teal drifting toward green; 0 when the sines and
    cosines cancel exactly), ``pixels`` (pixels used), ``excluded_fraction`` (share of the
    masked pixels dropped by the chroma floor; NaN for an empty mask) and
    ``pred_low_chroma_fraction``. Statistics are NaN with ``pixels = 0`` when nothing is chromatic.
    """
    p = as_protocol(protocol)
    floor = p.hue_chroma_floor if chroma_floor is None else float(chroma_floor)
    pred, target = pair_one(pred, target, "hue_shift")
    w = check_mask(mask, target.shape[-2:], "hue_shift")
    lab_p = srgb_to_lab(pred, check=False)
    lab_t = srgb_to_lab(target, check=False)
    considered = lab_t[0].numel() if w is None else int((w > 0).sum())
    dh, c_p, ws = _hue_delta(lab_p, lab_t, chroma(lab_t), w, floor)
    return hue_stats(dh, c_p < floor, ws, considered)


# --------------------------------------------------------------------------------------------
# The whole-image colour distribution (colourization: grey / sepia averaging)
# --------------------------------------------------------------------------------------------


class ChromaMoments(NamedTuple):
    """The first moments of an image's CIELAB chroma plane over all its N pixels:
    C̄ = mean C*ab, ā = mean a*, b̄ = mean b* (CIE units, D65/2°). ``(ā, b̄)`` is the chroma-weighted
    resultant of the unit hue vectors u_i: ``Σ C_i u_i = Σ (a_i, b_i)``."""

    c: float
    a: float
    b: float


def chroma_moments(image: Tensor) -> ChromaMoments:
    """:class:`ChromaMoments` of one sRGB image (3, H, W) (or (1, 3, H, W)), in float64 via
    :func:`colorfid.color.srgb_to_lab`. ``image_metrics`` gets the same numbers from its pixel pass."""
    x = check_srgb(one_image(image, "chroma_moments: image"), name="chroma_moments: image").reshape(3, -1)
    lab = srgb_to_lab(x.to(torch.float64), dim=0, check=False)
    return ChromaMoments(float(safe_hypot(lab[1], lab[2]).mean()), float(lab[1].mean()), float(lab[2].mean()))


def _chroma_scale(m: ChromaMoments, floor: float) -> float:
    return max(m.c, float(floor))


def resultant_length(m: ChromaMoments, floor: float) -> float:
    """Chroma-weighted mean resultant length of the hues, R̄ = |(ā, b̄)| / max(C̄, floor), in [0, 1].

    For C̄ >= ``floor`` this is Mardia & Jupp's mean resultant length (*Directional Statistics*,
    2000, §2.3.1) of the hue angles h_i with weights C_i: 1 when every pixel has one hue, 0 when the
    hues cancel. Below the floor (CIE C* units) it shrinks with the image's colourfulness, so a
    grey image has R̄ = 0 (its hues, set by rounding noise, are not a direction). 0 when C̄ = floor = 0.
    """
    den = _chroma_scale(m, floor)
    return math.hypot(m.a, m.b) / den if den > 0 else 0.0


def hue_spread(m: ChromaMoments, floor: float) -> float:
    """Chroma-weighted circular spread of the hues, V = (C̄ - |(ā, b̄)|) / max(C̄, floor), in [0, 1].

    For C̄ >= ``floor``: the circular variance V = 1 - R̄ (Mardia & Jupp 2000, §2.3.1) with weights
    C_i; 0 for a single hue (a uniform tint, sepia), 1 for hues that cancel (two hues 180° apart at
    equal chroma, or evenly spread ones); for concentrated hues V ≈ σ²/2 (σ the angular standard
    deviation, radians). Below the floor it shrinks with C̄ (a grey image: 0). Dimensionless.
    """
    den = _chroma_scale(m, floor)
    return max(m.c - math.hypot(m.a, m.b), 0.0) / den if den > 0 else 0.0


def mean_hue(m: ChromaMoments) -> float:
    """Hue angle h_ab of the chroma-weighted mean (ā, b̄), degrees in [0, 360): the hue the
    image's colours drift toward as a whole (e.g. ~50-80° for a sepia collapse); NaN when
    ā = b̄ = 0. Informational: it has no better direction, so it is not a gate key."""
    if m.a == 0.0 and m.b == 0.0:
        return NAN
    return math.degrees(math.atan2(m.b, m.a)) % 360.0


def _gt_has_colour(gt: ChromaMoments, floor: float) -> bool:
    return gt.c > 0 and gt.c >= floor


def _gt_has_hues(gt: ChromaMoments, floor: float) -> bool:
    dispersed = gt.c - math.hypot(gt.a, gt.b)
    return _gt_has_colour(gt, floor) and dispersed > 0 and dispersed >= floor


def chroma_ratio(pred: ChromaMoments, gt: ChromaMoments, floor: float) -> float:
    """Whole-image chroma ratio C̄_pred / C̄_gt (mean CIELAB chroma over all pixels, CIE 015:2018
    §8.2.1), target 1: 0 = a grey output (the grey identity of colourization), < 1 washed out or
    sepia (averaging plausible colours shrinks chroma), > 1 over-coloured.

    NaN when the GT's mean chroma is under ``floor`` (C* units; protocol ``image_chroma_floor``): a
    near-neutral GT has no colour to keep, and a ratio over it is noise, never a vacuous 1.
    """
    return pred.c / gt.c if _gt_has_colour(gt, floor) else NAN


def hue_spread_ratio(pred: ChromaMoments, gt: ChromaMoments, floor: float) -> float:
    """Ratio of circular hue spreads V_pred / V_gt (:func:`hue_spread`), target 1: 0 = one hue
    (a sepia / purple collapse) or grey, < 1 narrower hue distribution than the GT, > 1 wider.
    A ratio of circular variances: for concentrated hues ≈ (σ_pred / σ_gt)².

    NaN when the GT's mean chroma C̄ or its hue-dispersed chroma C̄ (1 - R̄) = C̄ - |(ā, b̄)| is
    under ``floor`` (C* units): a GT with (almost) one hue has no spread to compare with.
    """
    if not _gt_has_hues(gt, floor):
        return NAN
    return hue_spread(pred, floor) / hue_spread(gt, floor)


def hue_collapse(pred: ChromaMoments, gt: ChromaMoments, floor: float) -> float:
    """Signed change of hue concentration, in [-1, 1], target 0 (R̄ of :func:`resultant_length`):

    * ``(R̄_p - R̄_t) / (1 - R̄_t)`` when R̄_p >= R̄_t: the share of the way from the GT's
      concentration to a single hue; +1 = every colour drifted to one hue (sepia, purple);
    * ``(R̄_p - R̄_t) / R̄_t`` when R̄_p < R̄_t: the share of the GT's common hue that is lost;
      -1 = no common hue at all (a grey output, or hues scattered at random).

    So a uniform tint reads +1 and the GT 0; a grey output -1 where the GT's hues have a common
    direction (R̄_t > 0) and ~0 where they cancel exactly (then :func:`chroma_ratio` and
    :func:`hue_spread_ratio`, both 0, name it); a vivid colourization with the GT's spread of hues
    ~0 even when every hue is wrong (``hue_shift_*`` and ``de00_*`` see that).
    Which hue the colours collapse to: :func:`mean_hue`. NaN under the rule of
    :func:`hue_spread_ratio` (the GT needs hue spread for 1 - R̄_t > 0).
    """
    if not _gt_has_hues(gt, floor):
        return NAN
    rp, rt = resultant_length(pred, floor), resultant_length(gt, floor)
    if rp >= rt:
        return (rp - rt) / (1.0 - rt)
    return (rp - rt) / rt
