"""The flat per-image metric dict: every registered metric of one prediction against its GT.

One pass over the pixels (:mod:`colorfid.metrics.pixels`, eager or fused) gives the ΔE map, the
masks, the hue differences and the sums; the statistics of :mod:`colorfid.metrics.statistics`,
:mod:`~colorfid.metrics.color_stats`, :mod:`~colorfid.metrics.structural` and
:mod:`~colorfid.metrics.health` turn them into the keys of :data:`~colorfid.metrics.METRICS`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _heap
from .._layout import chunk_pixels
from ._checks import acc_dtype, bad_value_counts, clamped_srgb, one_image, same_shape, sanitize
from .color_stats import ChromaMoments, chroma_ratio, hue_collapse, hue_spread_ratio, hue_stats
from .fused import FusedPixels, kernels_for, ssim_planes_fused
from .health import health_from_counts
from .pixels import EagerPixels, PixelThresholds, Sums
from .protocol import MetricProtocol, as_protocol
from .registry import METRICS
from .statistics import NAN, ratio, summarize
from .structural import K1, K2, SIGMA, WIN_SIZE, psnr_from_mse, ssim_planes

__all__ = ["image_metrics"]

#: Pixels per strip of the eager pixel pass on the CPU: its temporaries stay cache-resident
#: (GPUs: ``_layout.DEVICE_CHUNK``).
_STRIP_PIXELS = 1 << 16


def image_metrics(
    pred: Tensor,
    target: Tensor,
    *,
    protocol: MetricProtocol | None = None,
    dtype: torch.dtype = torch.float64,
    fused: bool | None = None,
) -> dict[str, float]:
    """Every registered metric (:data:`METRICS`, in that order) of one prediction against its GT.

    The dict evaluate, gate, report and the trainer share. One image: ``(3, H, W)`` or
    ``(1, 3, H, W)`` (else :class:`~colorfid.errors.ShapeError`). Values are Python floats
    (``nonfinite_count`` too); NaN where a statistic is undefined (empty mask, neutral GT for a
    ratio, SSIM on images under 11 px); ``psnr`` is ``inf`` for identical images.

    * The **target** must be valid sRGB (:func:`colorfid.color.check_srgb`: finite, in [0, 1]
      within 1e-3) -- a broken ground truth is a data bug and raises.
    * The **prediction** is not rejected: ``nonfinite_count`` and ``out_of_range_frac`` report its
      NaN/Inf and out-of-range values as found, and every other metric is computed on the
      sanitised prediction (NaN -> 0, -Inf -> 0, +Inf -> 1, then clamped to [0, 1]) -- what a
      viewer or an 8-bit file would show.
    * Masks (``protocol``): "hc" = GT HSV saturation >= ``hc_saturation`` (``de00_hc_p95``,
      ``sat_ratio_hc``, ``hue_*_hc``, ``hc_fraction``); ``chroma_ratio_hc`` uses GT C*ab >=
      ``hc_chroma``; hue statistics further need GT C*ab >= ``hue_chroma_floor``.
    * ``sat_ratio`` and ``sat_ratio_hc`` use HSV S; ``brightness_ratio`` uses HSV V; ``psnr`` is over
      RGB with data range 1; ``ssim`` as :func:`~colorfid.metrics.ssim`.
    * The whole-image ratios ``sat_ratio`` / ``brightness_ratio`` are NaN where the GT's mean S / V
      is under ``protocol.ratio_floor`` (a near-grey / near-black GT); ``sat_diff`` /
      ``brightness_diff`` (mean pred - mean GT) are always defined.
    * ``chroma_ratio``, ``hue_spread_ratio`` and ``hue_collapse`` describe the whole image's CIELAB
      chroma distribution (:func:`~colorfid.metrics.chroma_ratio` and beside it); NaN when the GT's
      mean (or hue-dispersed) chroma is under ``image_chroma_floor``.

    Computed in ``dtype`` (float64, the reference precision, by default), in strips of pixels
    converted on the fly (bounded memory). Not differentiable.

    ``fused``: None (default) takes the fused CPU kernels when ``colorfid kernels build`` has
    built them for this machine (float64 on CPU; :mod:`colorfid.metrics.fused`), else the eager
    path; False always eager; True requires the kernels (:class:`~colorfid.errors.KernelError` if
    they are not built). The kernels are traces of the same functions: values agree with the
    eager path to float rounding (<= 1e-12 relative).
    """
    _heap.warm()
    p = as_protocol(protocol)
    pred = one_image(pred, "image_metrics: pred")
    target = one_image(target, "image_metrics: target")
    same_shape(pred, target, "image_metrics")
    with torch.no_grad():
        t_in = clamped_srgb(target.detach(), "image_metrics: target")
        raw = pred.detach()
        nonfinite, out_of_range = bad_value_counts(raw)
        clean = sanitize(raw)  # caller's dtype; strips are converted to ``dtype`` below
        h, w = t_in.shape[-2:]
        dev = t_in.device
        acc = acc_dtype(dev)
        px_kernel, ssim_kernel = kernels_for(fused, dtype, dev)
        pixels = EagerPixels(chunk_pixels(dev, _STRIP_PIXELS)) if px_kernel is None else FusedPixels(px_kernel)

        # Per-pixel maps kept: ΔE, the selectors and Δh; the ratios and counts are sums.
        n_px = h * w
        xf, tf = clean.reshape(3, n_px), t_in.reshape(3, n_px)
        de, hc, hue_sel, dh, pred_low = (torch.empty(n_px, dtype=dtype, device=dev) for _ in range(5))
        sums = torch.zeros(len(Sums._fields), dtype=acc, device=dev)
        thr = PixelThresholds.of(p)
        for s in range(0, n_px, pixels.step):
            e = min(n_px, s + pixels.step)
            terms = pixels(xf[:, s:e].to(dtype), tf[:, s:e].to(dtype), thr)
            for buf, o in zip((de, hc, hue_sel, dh, pred_low), terms[:5]):
                buf[s:e] = o[: e - s]
            sums += terms.sums
        del terms
        sv = Sums(*sums.tolist())
        n_hc = int(sv.n_hc)
        health = health_from_counts(
            nonfinite=nonfinite, out_of_range=out_of_range, values=raw.numel(), pixels=n_px, grey=sv.n_grey,
            colourful=sv.n_colourful, grey_colourful=sv.n_grey_colourful, sat_sum=sv.s_pred,
            target_sat_sum=sv.s_gt, protocol=p,
        )

        def mean(total: float, n: float) -> float:
            return total / n if n else NAN

        psnr_value = float(psnr_from_mse(sums[Sums._fields.index("sq_err")] / (3 * n_px), 1.0))
        ssim_value = NAN
        if min(h, w) >= WIN_SIZE:
            c1, c2 = K1**2, K2**2
            if ssim_kernel is not None and w > WIN_SIZE:
                planes = ssim_planes_fused(clean, t_in, c1, c2, dtype, ssim_kernel)
            else:
                planes = ssim_planes(clean, t_in, None, WIN_SIZE, SIGMA, c1, c2, dtype)
            ssim_value = float(planes.mean())
        del clean, t_in

        pm = ChromaMoments(sv.c_pred / n_px, sv.a_pred / n_px, sv.b_pred / n_px)
        gm = ChromaMoments(sv.c_gt / n_px, sv.a_gt / n_px, sv.b_gt / n_px)
        floor = p.image_chroma_floor

        de_all = summarize(de)
        de_hc = summarize(de, hc > 0.5)
        sel = hue_sel > 0.5
        hue = hue_stats(dh[sel], pred_low[sel], None, n_hc)

        out = {
            "de00_mean": de_all["mean"],
            "de00_median": de_all["median"],
            "de00_p95": de_all["p95"],
            "de00_p99": de_all["p99"],
            "de00_max": de_all["max"],
            "de00_hc_p95": de_hc["p95"],
            "sat_ratio": ratio(mean(sv.s_pred, n_px), mean(sv.s_gt, n_px), p.ratio_floor),
            "sat_ratio_hc": ratio(mean(sv.s_pred_hc, n_hc), mean(sv.s_gt_hc, n_hc)),
            "chroma_ratio_hc": ratio(mean(sv.c_pred_cc, sv.n_cc), mean(sv.c_gt_cc, sv.n_cc)),
            "hue_shift_hc_mean": hue["mean_abs"],
            "hue_shift_hc_p95": hue["p95"],
            "hue_drift_hc": hue["signed_mean"],
            "brightness_ratio": ratio(mean(sv.v_pred, n_px), mean(sv.v_gt, n_px), p.ratio_floor),
            "psnr": psnr_value,
            "ssim": ssim_value,
            "out_of_range_frac": float(health["out_of_range_frac"]),
            "nonfinite_count": float(health["nonfinite_count"]),
            "grey_collapse": float(health["grey_collapse"]),
            "mean_saturation": float(health["mean_saturation"]),
            "hc_fraction": mean(n_hc, n_px),
            "sat_diff": mean(sv.s_pred - sv.s_gt, n_px),
            "brightness_diff": mean(sv.v_pred - sv.v_gt, n_px),
            "chroma_ratio": chroma_ratio(pm, gm, floor),
            "hue_spread_ratio": hue_spread_ratio(pm, gm, floor),
            "hue_collapse": hue_collapse(pm, gm, floor),
        }
    assert list(out) == list(METRICS), "image_metrics and METRICS out of step"
    return {k: float(v) for k, v in out.items()}
