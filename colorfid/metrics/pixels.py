"""The per-pixel pass of :func:`~colorfid.metrics.image_metrics`: colour conversions, CIEDE2000,
HSV, chroma, hue, the masks and the per-image sums, on ``(3, N)`` strips.

:func:`pixel_terms` is both the eager path and what the fused kernel traces
(:mod:`colorfid.metrics.fused`); the protocol's thresholds and the sums travel as the named
tuples below. Selectors are float 0/1 weights (:mod:`colorfid._select`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._select import above, below
from ..color import hsv_saturation, safe_hypot, srgb_to_lab
from ..difference import ciede2000
from ._checks import acc_dtype
from .color_stats import hue_angle_delta
from .protocol import MetricProtocol

__all__ = ["PixelThresholds", "Sums", "PixelTerms", "pixel_terms", "EagerPixels"]


class PixelThresholds(NamedTuple):
    """The protocol thresholds of the pixel pass: floats (eager) or 0-d tensors (the fused
    kernel, so that one build serves every protocol)."""

    hc_saturation: Any
    grey_tolerance: Any
    hc_chroma: Any
    hue_chroma_floor: Any

    @classmethod
    def of(cls, p: MetricProtocol) -> PixelThresholds:
        return cls(p.hc_saturation, p.grey_tolerance, p.hc_chroma, p.hue_chroma_floor)


class Sums(NamedTuple):
    """The per-image sums of the pixel pass, in the order of :attr:`PixelTerms.sums`.

    "hc": GT HSV S >= hc_saturation; "cc": GT C*ab >= hc_chroma; grey: channel spread <=
    grey_tolerance; colourful: the GT is not grey. V, S are HSV value and saturation, C chroma;
    the last six are the unmasked sums of C*ab, a* and b* (:class:`~colorfid.metrics.ChromaMoments`)."""

    sq_err: float
    v_pred: float
    v_gt: float
    s_pred: float
    s_gt: float
    s_pred_hc: float
    s_gt_hc: float
    c_pred_cc: float
    c_gt_cc: float
    n_cc: float
    n_hc: float
    n_grey: float
    n_colourful: float
    n_grey_colourful: float
    c_pred: float
    c_gt: float
    a_pred: float
    b_pred: float
    a_gt: float
    b_gt: float


class PixelTerms(NamedTuple):
    """What the pass returns for a strip: per-pixel maps and the stacked :class:`Sums`."""

    de: Tensor  # ΔE00
    hc: Tensor  # high-chroma selector
    hue_sel: Tensor  # high chroma and GT C*ab >= hue_chroma_floor
    dh: Tensor  # Δh (hue_angle_delta), degrees
    pred_low: Tensor  # the prediction's C*ab < hue_chroma_floor
    sums: Tensor  # Sums, in the accumulation dtype


def pixel_terms(x: Tensor, t: Tensor, thr: PixelThresholds, valid: Tensor | None = None) -> PixelTerms:
    """The per-pixel work on the sanitised prediction ``x`` and the target ``t`` (3, N), sRGB in
    [0, 1], one float dtype. ``valid`` (float 0/1 per pixel, or None for all) excludes padding from
    the counts; padded pixels are zeros in both images, which add exactly 0 to the value sums
    (black has L* = a* = b* = 0 exactly)."""
    hc_s, tol, hc_c, floor = thr.hc_saturation, thr.grey_tolerance, thr.hc_chroma, thr.hue_chroma_floor
    acc = acc_dtype(x.device)
    sp, st = hsv_saturation(x, dim=0, check=False), hsv_saturation(t, dim=0, check=False)
    vx, vt = x.amax(dim=0), t.amax(dim=0)
    grey = 1.0 - above(vx - x.amin(dim=0), tol)
    colourful = above(vt - t.amin(dim=0), tol)
    hc = 1.0 - below(st, hc_s)
    lp, lt = srgb_to_lab(x, dim=0, check=False), srgb_to_lab(t, dim=0, check=False)
    de = ciede2000(*lp.unbind(0), *lt.unbind(0), 1.0, 1.0, 1.0)
    cp, ct = safe_hypot(lp[1], lp[2]), safe_hypot(lt[1], lt[2])
    ccf = 1.0 - below(ct, hc_c)
    hue_sel = hc * (1.0 - below(ct, floor))
    dh = hue_angle_delta(lp, lt, dim=0)
    pred_low = below(cp, floor)
    if valid is not None:
        hc, hue_sel, ccf, grey, colourful = (v * valid for v in (hc, hue_sel, ccf, grey, colourful))
    sums = {
        "sq_err": (x - t).square().sum(dtype=acc), "v_pred": vx.sum(dtype=acc), "v_gt": vt.sum(dtype=acc),
        "s_pred": sp.sum(dtype=acc), "s_gt": st.sum(dtype=acc),
        "s_pred_hc": (sp * hc).sum(dtype=acc), "s_gt_hc": (st * hc).sum(dtype=acc),
        "c_pred_cc": (cp * ccf).sum(dtype=acc), "c_gt_cc": (ct * ccf).sum(dtype=acc), "n_cc": ccf.sum(dtype=acc),
        "n_hc": hc.sum(dtype=acc), "n_grey": grey.sum(dtype=acc), "n_colourful": colourful.sum(dtype=acc),
        "n_grey_colourful": (grey * colourful).sum(dtype=acc),
        "c_pred": cp.sum(dtype=acc), "c_gt": ct.sum(dtype=acc), "a_pred": lp[1].sum(dtype=acc),
        "b_pred": lp[2].sum(dtype=acc), "a_gt": lt[1].sum(dtype=acc), "b_gt": lt[2].sum(dtype=acc),
    }
    return PixelTerms(de, hc, hue_sel, dh, pred_low, torch.stack([sums[k] for k in Sums._fields]))


class EagerPixels:
    """The eager pixel pass over strips of ``step`` pixels."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, x: Tensor, t: Tensor, thr: PixelThresholds) -> PixelTerms:
        return pixel_terms(x, t, thr)
