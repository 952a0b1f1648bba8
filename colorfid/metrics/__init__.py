"""Image-level colour-fidelity statistics: ΔE summaries, high-chroma masks, saturation and
chroma ratios, hue shift, brightness ratio, PSNR, SSIM and health flags.

Why masked statistics
---------------------
A restoration model can wash out strongly coloured surfaces while the image-wide numbers stay
perfect: on a mostly neutral photo, pixels whose target is strongly saturated can come out at
0.8 of their saturation while the whole-image saturation ratio reads 1.0. Every statistic here
therefore takes an optional ``mask`` (bool, or float weights), and :func:`image_metrics` reports
the ``*_hc`` statistics over the *high-chroma* pixels of the ground truth next to the global ones.

Conventions
-----------
* Images are sRGB-encoded float tensors in [0, 1], channel dimension -3: ``(3, H, W)``.
* Masks are shaped like the image without the channel dimension, ``(H, W)``: ``bool`` selects
  pixels; a floating mask gives non-negative weights (0 = excluded). Integer masks are refused
  (:class:`~colorfid.errors.DTypeError`: say ``mask.bool()`` or ``mask.float()``).
* Masks are always functions of the ground truth (or the caller's choice), never of the
  prediction, so no statistic can be improved by making the prediction worse.
* An empty selection gives ``float('nan')`` with ``pixels = 0`` -- never a crash, never 1.0.
  Values computed on masked-out pixels never influence a masked statistic.

Batches
-------
* Tensor-valued functions -- :func:`delta_e_map`, :func:`high_chroma_mask`, :func:`psnr`,
  :func:`ssim`, :func:`ssim_map` -- take any leading batch dims ``(..., 3, H, W)`` and return
  per-image results (``psnr``/``ssim`` return a tensor of shape ``(...)``). ``psnr`` and
  ``ssim`` are differentiable (the losses reuse ``ssim``).
* Dict-valued statistics -- :func:`saturation_ratio`, :func:`hue_shift`,
  :func:`brightness_ratio`, :func:`health_flags`, :func:`image_metrics` -- describe **one image**:
  ``(3, H, W)`` or ``(1, 3, H, W)``; a larger batch raises :class:`~colorfid.errors.ShapeError`
  (loop: ``[image_metrics(p, t) for p, t in zip(pred, target)]``). Their values are Python
  floats (reporting, not training).
* :func:`summarize` and :func:`percentile` pool every element of the tensor they are given.

Statistics are accumulated in float64 (float32 on devices without float64, e.g. MPS).

Where things are
----------------
:mod:`~colorfid.metrics.protocol` (thresholds), :mod:`~colorfid.metrics.registry` (names,
directions, badness), :mod:`~colorfid.metrics.statistics` (summaries, percentiles),
:mod:`~colorfid.metrics.color_stats` (ΔE maps, masks, ratios, hue shift, the whole-image chroma
distribution of colourization: :func:`chroma_ratio`, :func:`hue_spread_ratio`, :func:`hue_collapse`),
:mod:`~colorfid.metrics.structural` (PSNR, SSIM, MS-SSIM), :mod:`~colorfid.metrics.health`,
:mod:`~colorfid.metrics.image` (:func:`image_metrics`) with its pixel pass
(:mod:`~colorfid.metrics.pixels`) and fused kernels (:mod:`~colorfid.metrics.fused`).
"""

from __future__ import annotations

from .color_stats import (
    ChromaMoments, brightness_ratio, chroma_moments, chroma_ratio, delta_e_map, high_chroma_mask, hue_angle_delta,
    hue_collapse, hue_shift, hue_spread, hue_spread_ratio, mean_hue, resultant_length, saturation_ratio,
)
from .fused import metric_kernels
from .health import health_flags
from .image import image_metrics
from .protocol import MetricProtocol
from .registry import COLOR_PIPELINE, METRICS, METRICS_VERSION, Direction, MetricSpec, badness, get_metric
from .statistics import percentile, summarize
from .structural import MS_SSIM_WEIGHTS, ms_ssim, psnr, ssim, ssim_map

__all__ = [
    "METRICS_VERSION",
    "COLOR_PIPELINE",
    "MetricProtocol",
    "MetricSpec",
    "Direction",
    "METRICS",
    "get_metric",
    "badness",
    "summarize",
    "percentile",
    "delta_e_map",
    "high_chroma_mask",
    "saturation_ratio",
    "hue_shift",
    "hue_angle_delta",
    "brightness_ratio",
    "ChromaMoments",
    "chroma_moments",
    "resultant_length",
    "hue_spread",
    "mean_hue",
    "chroma_ratio",
    "hue_spread_ratio",
    "hue_collapse",
    "psnr",
    "ssim",
    "ssim_map",
    "ms_ssim",
    "MS_SSIM_WEIGHTS",
    "health_flags",
    "image_metrics",
    "metric_kernels",
]
