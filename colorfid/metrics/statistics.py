"""Summary statistics of value maps: (weighted) means, percentiles, ratios of means.

Percentiles interpolate linearly (numpy's default, Hyndman & Fan 1996 type 7); with float weights
the weighted rule of :func:`quantiles`. An empty selection gives NaN with ``pixels = 0``; a NaN
among the selected values makes every statistic NaN. Accumulated in float64 (float32 on MPS).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import RangeError
from ._checks import acc_dtype, check_mask

__all__ = ["NAN", "select", "quantiles", "percentile", "summarize", "wmean", "ratio"]


NAN = float("nan")


def select(values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Flatten ``values`` (in the accumulation dtype) and keep the pixels with positive weight.

    Returns (values, weights) with weights None when every kept weight is equal (the unweighted
    case, which includes bool masks and 0/1 float masks).
    """
    v = values.detach().reshape(-1).to(acc_dtype(values.device))
    if mask is None:
        return v, None
    w = mask.detach().reshape(-1)
    if w.dtype == torch.bool:
        return v[w], None
    w = w.to(v.dtype)
    keep = w > 0
    v, w = v[keep], w[keep]
    if w.numel() == 0 or bool(w.min() == w.max()):
        return v, None
    return v, w


def _order_stats(v: Tensor, idx: Sequence[int]) -> dict[int, float]:
    """The order statistics ``sorted(v)[i]`` for ``i`` in ``idx`` (v flat, no NaN).

    On CPU through numpy's ``partition`` at exactly those positions (introselect; each picked
    element is the one a full sort would put there). Elsewhere ``torch.sort`` on the tensor's device.
    """
    idx = list(idx)
    if v.device.type == "cpu":
        s = np.partition(v.numpy(), idx)
        return {i: float(s[i]) for i in idx}
    picked = torch.sort(v).values[torch.tensor(idx, device=v.device)].tolist()
    return dict(zip(idx, picked))


def quantiles(v: Tensor, w: Tensor | None, qs: Sequence[float]) -> list[float]:
    """Quantiles (q in [0, 1]) of the selected values, by linear interpolation.

    Unweighted: numpy's default (``method="linear"``, Hyndman & Fan 1996 type 7): position
    h = q (n - 1) in the sorted sample, interpolated between its neighbours.

    Weighted (positive, not all equal): the distinct values x_1 < ... < x_G, with total weight
    W_g, count k_g and mean weight m_g = W_g / k_g, occupy the span [C_{g-1}, C_g] of the
    cumulative weight. Each is placed from C_{g-1} + m_g / 2 to C_g - m_g / 2 (a single sample:
    the midpoint of its share); these positions are mapped affinely so that the first is 0 and
    the last 1, and q is interpolated linearly along them. With equal weights every sample sits
    at i / (n - 1), exactly the unweighted rule; the result does not depend on the order of the
    data (ties included), is invariant to scaling the weights and mirror-symmetric
    (q-quantile of -v = -(1 - q)-quantile of v).
    """
    n = v.numel()
    if n == 0 or bool(torch.isnan(v).any()):
        return [NAN for _ in qs]
    if w is None:
        need: list[tuple[int, int, float]] = []
        for q in qs:
            h = q * (n - 1)
            lo = min(int(math.floor(h)), n - 1)
            t = h - lo
            need.append((lo, min(lo + 1, n - 1) if t > 0 else lo, t))  # t == 0: no upper neighbour needed
        stat = _order_stats(v, sorted({i for lo, hi, _ in need for i in (lo, hi)}))
        out = []
        for lo, hi, t in need:
            a, b = stat[lo], stat[hi]
            # numpy's _lerp: a + t (b - a), computed from the upper end when t >= 0.5.
            out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
        return out
    order = torch.argsort(v)
    s, ws = v[order], w[order]
    xg, counts = torch.unique_consecutive(s, return_counts=True)
    if xg.numel() == 1:
        return [float(xg[0]) for _ in qs]
    c = torch.cumsum(ws, 0)[torch.cumsum(counts, 0) - 1]  # C_g
    c_prev = torch.cat([c.new_zeros(1), c[:-1]])
    half = (c - c_prev) / counts.to(c.dtype) / 2  # m_g / 2
    pos = torch.stack([c_prev + half, c - half], dim=1).reshape(-1)
    val = xg.repeat_interleave(2)
    pos = (pos - pos[0]) / (pos[-1] - pos[0])
    out = []
    for q in qs:
        qt = torch.tensor([q], dtype=pos.dtype, device=pos.device)
        i = int(torch.searchsorted(pos, qt, right=True)[0]) - 1
        i = max(0, min(i, pos.numel() - 2))
        a, b = float(val[i]), float(val[i + 1])
        span = float(pos[i + 1] - pos[i])
        t = 1.0 if span <= 0 else min(max(float(qt[0] - pos[i]) / span, 0.0), 1.0)
        out.append(a + (b - a) * t)
    return out


def percentile(values: Tensor, q: float, *, mask: Tensor | None = None) -> float:
    """The ``q``-th percentile (q in [0, 100]) of ``values`` (any shape, all elements pooled).

    Linear interpolation as numpy's default ``np.percentile(values, q)``; with a float
    ``mask`` the weighted rule of :func:`summarize`. NaN for an empty selection or when a
    selected value is NaN.
    """
    if not 0 <= q <= 100:
        raise RangeError(f"percentile: q must lie in [0, 100], got {q}")
    values = torch.as_tensor(values)
    mask = check_mask(mask, values.shape, "percentile")
    v, w = select(values, mask)
    return quantiles(v, w, [q / 100.0])[0]


def summarize(values: Tensor, mask: Tensor | None = None) -> dict[str, float | int]:
    """Summary statistics of a value map (e.g. a ΔE map): mean, median, p95, p99, max, pixels.

    ``values`` may have any shape (all elements are pooled: pass one image's map for per-image
    statistics); ``mask`` has the same shape (bool selects, float weights weigh) or broadcasts to it.

    * ``mean``: the (weighted) arithmetic mean.
    * ``median``, ``p95``, ``p99``: percentiles by linear interpolation, identical to
      ``numpy.percentile(v, q)`` (method ``"linear"``, Hyndman & Fan 1996 type 7). With
      non-uniform float weights, a weighted generalisation (each distinct value placed on its
      share of the cumulative weight, inset by half its mean weight at both ends, first at 0,
      last at 1, interpolated linearly) that equals the unweighted rule when all weights are
      equal, is independent of the data's order and invariant to scaling the weights.
    * ``max``: largest selected value (weights do not matter, only weight > 0).
    * ``pixels``: number of selected elements (weight > 0), an ``int``.

    An empty selection gives NaN for every statistic and ``pixels = 0``. A NaN among the
    selected values makes every statistic NaN (it is never silently skipped). Units are those
    of ``values``. Not differentiable (returns Python floats).
    """
    values = torch.as_tensor(values)
    mask = check_mask(mask, values.shape, "summarize")
    v, w = select(values, mask)
    n = int(v.numel())
    if n == 0:
        return {"mean": NAN, "median": NAN, "p95": NAN, "p99": NAN, "max": NAN, "pixels": 0}
    mean = float(v.mean()) if w is None else float((v * w).sum() / w.sum())
    med, p95, p99 = quantiles(v, w, [0.5, 0.95, 0.99])
    mx = float(v.max()) if not bool(torch.isnan(v).any()) else NAN
    return {"mean": mean, "median": med, "p95": p95, "p99": p99, "max": mx, "pixels": n}


def wmean(values: Tensor, w: Tensor | None) -> tuple[float, int]:
    """Weighted mean of ``values`` under weights ``w`` (same shape; None = all 1) in the
    accumulation dtype, and the count of weight > 0. Masked-out values never enter (not even NaN)."""
    v = values.detach().to(acc_dtype(values.device))
    if w is None:
        n = v.numel()
        return (float(v.mean()) if n else NAN), n
    sel = w > 0
    n = int(sel.sum())
    if n == 0:
        return NAN, 0
    w = w.to(v.dtype)
    return float(torch.where(sel, v * w, torch.zeros((), dtype=v.dtype, device=v.device)).sum() / w.sum()), n


def ratio(num: float, den: float, floor: float = 0.0) -> float:
    """``num / den``; NaN when either is NaN, ``den`` is 0 or ``den < floor`` (a denominator too
    small for the ratio to mean anything, see ``MetricProtocol.ratio_floor``)."""
    if math.isnan(num) or math.isnan(den) or den == 0 or den < floor:
        return NAN
    return num / den
