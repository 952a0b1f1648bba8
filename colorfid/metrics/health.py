"""Health flags of a prediction: values out of range, NaN/Inf, grey collapse, low colour."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..color import hsv_saturation
from ._checks import acc_dtype, bad_value_counts, clamped_srgb, one_image, same_shape, sanitize
from .protocol import MetricProtocol, as_protocol
from .statistics import NAN

__all__ = ["health_flags", "health_from_counts"]


def _low_color_level(mean_sat: float, p: MetricProtocol) -> str:
    if math.isnan(mean_sat):
        return "critical"
    if mean_sat < p.low_color_critical:
        return "critical"
    if mean_sat < p.low_color_min:
        return "low"
    return "ok"


def health_flags(
    pred: Tensor, target: Tensor | None = None, *, protocol: MetricProtocol | None = None
) -> dict[str, float | int | str]:
    """Sanity flags of a prediction: values out of range, NaN/Inf, grey collapse, low colour.

    The prediction is **not** range-checked (reporting bad values is this function's job); the
    target, when given, is validated with :func:`colorfid.color.check_srgb`. One image.

    Returns
    -------
    out_of_range_frac:
        Fraction of the prediction's values (pixels x channels) < 0 or > 1 (±Inf included,
        NaN not: NaN is counted by ``nonfinite_count``), strictly, without tolerance.
    nonfinite_count:
        Number of NaN/±Inf values (``int``).
    grey_fraction:
        Fraction of pixels whose channel spread max - min <= ``grey_tolerance``.
    grey_collapse:
        With a target: fraction of the target's non-grey pixels (spread > tolerance) that the
        prediction renders grey; NaN if the target is all grey. Without: ``grey_fraction``.
    mean_saturation:
        Mean HSV saturation of the prediction, in [0, 1].
    low_color:
        ``"critical"`` when ``mean_saturation < low_color_critical`` (0.04), ``"low"`` under
        ``low_color_min`` (0.10), else ``"ok"``. Absolute: compare with ``target_mean_saturation``
        (present when a target is given) before blaming the model for a neutral scene.

    ``grey_*`` and ``mean_saturation`` are computed on the sanitised prediction (NaN -> 0,
    +Inf -> 1, then clamped to [0, 1]), as :func:`~colorfid.metrics.image_metrics` does.
    """
    p = as_protocol(protocol)
    pred = one_image(pred, "health_flags: pred")
    if target is not None:
        target = one_image(target, "health_flags: target")
        same_shape(pred, target, "health_flags")
        target = clamped_srgb(target, "health_flags: target")
    with torch.no_grad():
        raw = pred.detach()
        clean = sanitize(raw)
        acc = acc_dtype(raw.device)
        grey = (clean.amax(dim=-3) - clean.amin(dim=-3)) <= p.grey_tolerance
        colourful = None if target is None else (target.amax(dim=-3) - target.amin(dim=-3)) > p.grey_tolerance
        sat = hsv_saturation(clean, check=False).to(acc)
        sat_t = None if target is None else hsv_saturation(target, check=False).to(acc)
        nonfinite, out_of_range = bad_value_counts(raw)
        return health_from_counts(
            nonfinite=nonfinite, out_of_range=out_of_range, values=raw.numel(), pixels=grey.numel(),
            grey=int(grey.sum()),
            colourful=None if colourful is None else int(colourful.sum()),
            grey_colourful=None if colourful is None else int((grey & colourful).sum()),
            sat_sum=float(sat.sum()), target_sat_sum=None if sat_t is None else float(sat_t.sum()), protocol=p,
        )


def health_from_counts(
    *,
    nonfinite: int,
    out_of_range: int,
    values: int,
    pixels: int,
    grey: float,
    colourful: float | None,
    grey_colourful: float | None,
    sat_sum: float,
    target_sat_sum: float | None,
    protocol: MetricProtocol,
) -> dict[str, float | int | str]:
    """The flags of :func:`health_flags` from their counts: ``nonfinite`` and ``out_of_range``
    among ``values`` values; among ``pixels`` pixels, ``grey`` grey in the prediction,
    ``colourful`` not grey in the target (None: no target) and ``grey_colourful`` both; the sums
    of the HSV saturation of the prediction and of the target."""
    n, p = pixels, protocol
    grey_fraction = grey / n if n else NAN
    out: dict[str, float | int | str] = {
        "out_of_range_frac": out_of_range / values if values else NAN,
        "nonfinite_count": nonfinite,
        "grey_fraction": grey_fraction,
    }
    if colourful is not None:
        k = colourful
        out["grey_collapse"] = grey_colourful / k if k else NAN  # type: ignore[operator]
    else:
        out["grey_collapse"] = grey_fraction
    mean_sat = sat_sum / n if n else NAN
    out["mean_saturation"] = mean_sat
    out["low_color"] = _low_color_level(mean_sat, p)
    if target_sat_sum is not None:
        out["target_mean_saturation"] = target_sat_sum / n if n else NAN
    return out
