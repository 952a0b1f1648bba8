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
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from . import _aot, _heap
from ._select import above, below, nonzero, where
from ._tensors import REDUCED, channel_dim, check_float, reduce
from .color import check_srgb, chroma, hsv_saturation, safe_hypot, srgb_to_lab
from .difference import ciede2000, delta_e_76, delta_e_94, delta_e_2000
from .errors import ConfigError, DTypeError, KernelError, RangeError, ShapeError, UnknownNameError, UsageError

__all__ = [
    "METRICS_VERSION",
    "MetricProtocol",
    "MetricSpec",
    "METRICS",
    "get_metric",
    "summarize",
    "percentile",
    "delta_e_map",
    "high_chroma_mask",
    "saturation_ratio",
    "hue_shift",
    "hue_angle_delta",
    "brightness_ratio",
    "psnr",
    "ssim",
    "ssim_map",
    "health_flags",
    "image_metrics",
]

#: Version of the metric definitions below; stored in results files (``protocol.metrics_version``).
#: Bump it whenever a number :func:`image_metrics` returns would change for the same images.
METRICS_VERSION = 1

# ----------------------------------------------------------------------------------------------
# Protocol
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricProtocol:
    """The thresholds that define the masked statistics. Results record it; gates compare it.

    Attributes
    ----------
    hc_saturation:
        A pixel is *high chroma* when its ground-truth HSV saturation S = (max - min) / max is at
        least this (in [0, 1]; default 0.5). Used by every ``*_hc`` key except ``chroma_ratio_hc``.
    hc_chroma:
        The CIELAB variant: GT chroma C*ab at least this (CIE units; default 40) -- the mask of
        ``chroma_ratio_hc`` and of ``high_chroma_mask(space="lab")``.
    hue_chroma_floor:
        Hue statistics use only pixels whose GT chroma C*ab is at least this (default 10): below it
        the hue angle of the target is ill-conditioned. Only the GT decides (see :func:`hue_shift`).
    grey_tolerance:
        A pixel is grey when max(R, G, B) - min(R, G, B) <= this (encoded sRGB; default 0.02).
    low_color_min, low_color_critical:
        Mean HSV saturation of the prediction below these flags ``low`` / ``critical`` colour
        (defaults 0.10 and 0.04).
    worst_k:
        How many worst images reports and results list per set (default 3).
    """

    hc_saturation: float = 0.5
    hc_chroma: float = 40.0
    hue_chroma_floor: float = 10.0
    grey_tolerance: float = 0.02
    low_color_min: float = 0.10
    low_color_critical: float = 0.04
    worst_k: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            want_int = f.type in (int, "int")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (want_int and not isinstance(v, int)):
                kind = "an integer" if want_int else "a number"
                raise ConfigError(f"MetricProtocol.{f.name}: expected {kind}, got {v!r}")
            if not want_int:
                object.__setattr__(self, f.name, float(v))
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"MetricProtocol.{f.name}: must be finite and >= 0, got {v!r}")
        if self.hc_saturation > 1:
            raise ConfigError(f"MetricProtocol.hc_saturation: HSV saturation lies in [0, 1], got {self.hc_saturation}")
        if self.low_color_critical > self.low_color_min:
            raise ConfigError(
                f"MetricProtocol: low_color_critical ({self.low_color_critical}) must not exceed "
                f"low_color_min ({self.low_color_min})"
            )
        if self.worst_k < 1:
            raise ConfigError(f"MetricProtocol.worst_k: must be >= 1, got {self.worst_k}")

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (JSON/TOML-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> MetricProtocol:
        """Build from a (possibly partial) mapping; missing keys keep their defaults.

        Unknown keys raise :class:`~colorfid.errors.ConfigError` listing the known ones (a
        misspelt threshold must never be silently ignored).
        """
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ConfigError(f"MetricProtocol.from_dict: expected a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(str(k), known, 1)) else repr(k) for k in unknown]
            raise ConfigError(f"unknown protocol key(s) {', '.join(hints)}; known keys: {', '.join(known)}")
        return cls(**dict(d))


def _protocol(protocol: MetricProtocol | Mapping[str, Any] | None) -> MetricProtocol:
    if protocol is None:
        return MetricProtocol()
    if isinstance(protocol, MetricProtocol):
        return protocol
    return MetricProtocol.from_dict(protocol)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

Direction = Literal["lower", "higher", "target"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric key means and which way is better.

    ``direction`` is ``"lower"`` / ``"higher"`` (better) or ``"target"`` (best at ``target``; the
    distance ``|value - target|`` is what gets worse).
    """

    name: str
    direction: Direction
    target: float | None
    unit: str
    description: str

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher", "target"):
            raise ConfigError(f"MetricSpec {self.name!r}: direction must be lower|higher|target, got {self.direction!r}")
        if (self.direction == "target") != (self.target is not None):
            raise ConfigError(f"MetricSpec {self.name!r}: a target value is required exactly for direction 'target'")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spec(name: str, direction: Direction, unit: str, description: str, target: float | None = None) -> MetricSpec:
    return MetricSpec(name, direction, target, unit, description)


_HC = "high-chroma pixels (GT HSV saturation >= hc_saturation)"

#: The keys :func:`image_metrics` returns, in order, with their meaning. The one registry the
#: gate, results and report use to validate metric names.
METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in [
        _spec("de00_mean", "lower", "ΔE00", "Mean CIEDE2000 difference over all pixels (CIE 142-2001; Sharma et al. 2005)."),
        _spec("de00_median", "lower", "ΔE00", "Median CIEDE2000 difference over all pixels."),
        _spec("de00_p95", "lower", "ΔE00", "95th percentile of CIEDE2000 over all pixels (linear interpolation)."),
        _spec("de00_p99", "lower", "ΔE00", "99th percentile of CIEDE2000 over all pixels (linear interpolation)."),
        _spec("de00_max", "lower", "ΔE00", "Largest CIEDE2000 difference of any pixel."),
        _spec("de00_hc_p95", "lower", "ΔE00", f"95th percentile of CIEDE2000 over {_HC}; NaN if none."),
        _spec("sat_ratio", "target", "ratio", "Mean HSV saturation of the prediction / of the GT, all pixels.", 1.0),
        _spec("sat_ratio_hc", "target", "ratio", f"Mean HSV saturation pred / GT over {_HC}; < 1 = washed out.", 1.0),
        _spec("chroma_ratio_hc", "target", "ratio", "Mean CIELAB chroma C*ab pred / GT over pixels with GT C* >= hc_chroma.", 1.0),
        _spec("hue_shift_hc_mean", "lower", "degrees", f"Mean circular |Δh_ab| over {_HC} with GT C* >= hue_chroma_floor."),
        _spec("hue_shift_hc_p95", "lower", "degrees", "95th percentile of circular |Δh_ab| on the same pixels."),
        _spec("hue_drift_hc", "target", "degrees", "Circular mean of signed Δh_ab (pred - GT) in (-180, 180] on the same pixels.", 0.0),
        _spec("brightness_ratio", "target", "ratio", "Mean HSV value V = max(R, G, B) of the prediction / of the GT.", 1.0),
        _spec("psnr", "higher", "dB", "PSNR over RGB, data range 1 (inf for identical images)."),
        _spec("ssim", "higher", "", "Mean SSIM over RGB channels, Gaussian window 11, sigma 1.5 (Wang et al. 2004); NaN below 11 px."),
        _spec("out_of_range_frac", "lower", "fraction", "Fraction of the prediction's values (pixel x channel) outside [0, 1], before clamping."),
        _spec("nonfinite_count", "lower", "count", "Number of NaN/Inf values in the prediction, before they are zeroed."),
        _spec("grey_collapse", "lower", "fraction", "Fraction of the GT's non-grey pixels that the prediction renders grey (channel spread <= grey_tolerance)."),
        _spec("mean_saturation", "higher", "HSV S", "Mean HSV saturation of the prediction (low colour: < low_color_min; critical: < low_color_critical)."),
        _spec("hc_fraction", "higher", "fraction", f"Fraction of the image that is {_HC}; a property of the GT that says how many pixels the *_hc keys rest on."),
    ]
}


def get_metric(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name``; :class:`~colorfid.errors.UnknownNameError` listing the
    known names (with the closest match) when it is not registered."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(METRICS), 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(f"unknown metric {name!r}{hint}; known metrics: {', '.join(METRICS)}") from None


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _image(x: Tensor, name: str) -> Tensor:
    """Validate dtype and channel dim (not the range) of an image ``(..., 3, H, W)``."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ShapeError(f"{name}: expected an image (..., 3, H, W), got shape {tuple(x.shape)}")
    channel_dim(x, -3, name)
    check_float(x, name)
    return x


def _one_image(x: Tensor, name: str) -> Tensor:
    """Accept (3, H, W) or (1, 3, H, W); return (3, H, W)."""
    _image(x, name)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ShapeError(
            f"{name}: this statistic describes one image (3, H, W) or (1, 3, H, W), got shape "
            f"{tuple(x.shape)}; loop over the batch, e.g. [f(p, t) for p, t in zip(pred, target)]"
        )
    return x


def _same_shape(pred: Tensor, target: Tensor, func: str) -> None:
    if pred.shape != target.shape:
        raise ShapeError(f"{func}: pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")


def _mask(mask: Tensor | None, shape: Sequence[int], func: str) -> Tensor | None:
    """Validate a mask against the pixel shape ``shape`` (image shape without channel dim)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise DTypeError(f"{func}: mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise DTypeError(f"{func}: mask must be bool or float weights, got {mask.dtype}; use mask.bool() or mask.float()")
    shape = tuple(shape)
    if tuple(mask.shape) != shape:
        # Accept a leading singleton batch dim either way ((1, H, W) for (H, W) and vice versa)
        # and a mask broadcast over leading batch dims; nothing else.
        m = mask
        while m.dim() > len(shape) and m.shape[0] == 1:
            m = m[0]
        try:
            if m.dim() > len(shape) or torch.broadcast_shapes(tuple(m.shape), shape) != shape:
                raise RuntimeError
        except RuntimeError:
            raise ShapeError(
                f"{func}: mask shape {tuple(mask.shape)} does not match the image's pixel shape {shape} "
                "(the image shape without the channel dim)"
            ) from None
        mask = m.expand(shape)
    if mask.is_floating_point():
        md = mask.detach()
        if not bool(torch.isfinite(md).all()) or bool((md < 0).any()):
            raise RangeError(f"{func}: float mask weights must be finite and >= 0 (mask shape {tuple(mask.shape)})")
    return mask


def _srgb(x: Tensor, name: str) -> Tensor:
    """check_srgb (range, finite), then clamp the tolerated excursions of [-tol, 1 + tol]."""
    x = check_srgb(x, name=name)
    return x.clamp(0.0, 1.0)


def _bad_value_counts(x: Tensor) -> tuple[int, int]:
    """(NaN/±Inf count, count of values < 0 or > 1 -- ±Inf included, NaN not) of a prediction.

    One reduction (``aminmax``) answers the common case, every value finite and in [0, 1]
    (NaN or Inf would show in the min or max); only otherwise are the elements counted (bool
    passes are slow on CPU). Exact either way.
    """
    if x.numel() == 0:
        return 0, 0
    lo, hi = (float(v) for v in torch.aminmax(x))
    if 0.0 <= lo and hi <= 1.0:  # False for NaN
        return 0, 0
    return int((~torch.isfinite(x)).sum()), int(((x < 0) | (x > 1)).sum())


def _sanitize(x: Tensor) -> Tensor:
    """NaN -> 0, -Inf -> 0, +Inf -> 1, then clamp to [0, 1] (how image_metrics treats a bad prediction)."""
    return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------

_NAN = float("nan")


def _select(values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Flatten ``values`` (in the accumulation dtype) and keep the pixels with positive weight.

    Returns (values, weights) with weights None when every kept weight is equal (the unweighted
    case, which includes bool masks and 0/1 float masks).
    """
    v = values.detach().reshape(-1).to(_acc_dtype(values.device))
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
    element is the one a full sort would put there): ~3x numpy's vectorised sort and ~60x
    ``torch.sort`` at 50k values. Elsewhere ``torch.sort`` on the tensor's device.
    """
    idx = list(idx)
    if v.device.type == "cpu":
        s = np.partition(v.numpy(), idx)
        return {i: float(s[i]) for i in idx}
    picked = torch.sort(v).values[torch.tensor(idx, device=v.device)].tolist()
    return dict(zip(idx, picked))


def _quantiles(v: Tensor, w: Tensor | None, qs: Sequence[float]) -> list[float]:
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
        return [_NAN for _ in qs]
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
    mask = _mask(mask, values.shape, "percentile")
    v, w = _select(values, mask)
    return _quantiles(v, w, [q / 100.0])[0]


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
    mask = _mask(mask, values.shape, "summarize")
    v, w = _select(values, mask)
    n = int(v.numel())
    if n == 0:
        return {"mean": _NAN, "median": _NAN, "p95": _NAN, "p99": _NAN, "max": _NAN, "pixels": 0}
    mean = float(v.mean()) if w is None else float((v * w).sum() / w.sum())
    med, p95, p99 = _quantiles(v, w, [0.5, 0.95, 0.99])
    mx = float(v.max()) if not bool(torch.isnan(v).any()) else _NAN
    return {"mean": mean, "median": med, "p95": p95, "p99": p99, "max": mx, "pixels": n}


def _wmean(values: Tensor, w: Tensor | None) -> tuple[float, int]:
    """Weighted mean of ``values`` under weights ``w`` (same shape; None = all 1) in the
    accumulation dtype, and the count of weight > 0. Masked-out values never enter (not even NaN)."""
    v = values.detach().to(_acc_dtype(values.device))
    if w is None:
        n = v.numel()
        return (float(v.mean()) if n else _NAN), n
    sel = w > 0
    n = int(sel.sum())
    if n == 0:
        return _NAN, 0
    w = w.to(v.dtype)
    return float(torch.where(sel, v * w, torch.zeros((), dtype=v.dtype, device=v.device)).sum() / w.sum()), n


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den) or den == 0:
        return _NAN
    return num / den


# ----------------------------------------------------------------------------------------------
# ΔE and masks
# ----------------------------------------------------------------------------------------------

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
    p = _protocol(protocol)
    target = _srgb(_image(target, "high_chroma_mask: target"), "high_chroma_mask: target")
    if space == "hsv":
        thr = p.hc_saturation if threshold is None else float(threshold)
        return hsv_saturation(target, check=False) >= thr
    if space == "lab":
        thr = p.hc_chroma if threshold is None else float(threshold)
        return chroma(srgb_to_lab(target, check=False)) >= thr
    raise UnknownNameError(f"high_chroma_mask: unknown space {space!r}; known: hsv, lab")


# ----------------------------------------------------------------------------------------------
# Colour statistics (one image)
# ----------------------------------------------------------------------------------------------


def _pair_one(pred: Tensor, target: Tensor, func: str) -> tuple[Tensor, Tensor]:
    pred = _one_image(pred, f"{func}: pred")
    target = _one_image(target, f"{func}: target")
    _same_shape(pred, target, func)
    pred = _srgb(pred, f"{func}: pred")
    target = _srgb(target, f"{func}: target")
    return pred, target


def _ratio_of_means(p_map: Tensor, t_map: Tensor, w: Tensor | None) -> dict[str, float | int]:
    pm, n = _wmean(p_map, w)
    tm, _ = _wmean(t_map, w)
    return {"value": _ratio(pm, tm), "pixels": n, "pred_mean": pm, "target_mean": tm}


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
    pred, target = _pair_one(pred, target, "saturation_ratio")
    w = _mask(mask, target.shape[-2:], "saturation_ratio")
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
    pred, target = _pair_one(pred, target, "brightness_ratio")
    w = _mask(mask, target.shape[-2:], "brightness_ratio")
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
    acc = _acc_dtype(lab_t.device)
    ab_p = lab_p.reshape(3, -1)[1:, idx].to(acc)
    ab_t = lab_t.reshape(3, -1)[1:, idx].to(acc)
    return hue_angle_delta(ab_p, ab_t, dim=0), safe_hypot(ab_p[0], ab_p[1]), ws


def _hue_stats(dh: Tensor, pred_low: Tensor, ww: Tensor | None, considered: int) -> dict[str, float | int]:
    """Hue statistics of the hue differences ``dh`` (degrees, see :func:`_hue_delta`);
    ``pred_low`` flags the pixels where the prediction's chroma is under the floor;
    ``considered`` is the number of pixels the mask selected before the chroma floor."""
    n = int(dh.numel())
    excluded = _NAN if considered == 0 else (considered - n) / considered
    if n == 0:
        return {"mean_abs": _NAN, "p95": _NAN, "signed_mean": _NAN, "pixels": 0,
                "excluded_fraction": excluded, "pred_low_chroma_fraction": _NAN}
    ww = None if ww is None else ww.to(dh.dtype)
    ad = dh.abs()
    mean_abs, _ = _wmean(ad, ww)
    p95 = _quantiles(*_select(ad, ww), [0.95])[0]
    rad = dh * (math.pi / 180.0)
    sin, cos = torch.sin(rad), torch.cos(rad)
    if ww is not None:
        sin, cos = sin * ww, cos * ww
    s, c = float(sin.sum()), float(cos.sum())
    signed = math.degrees(math.atan2(s, c)) if (s != 0 or c != 0) else 0.0
    if signed <= -180.0:
        signed = 180.0
    low, _ = _wmean(pred_low.to(dh.dtype), ww)
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
    p = _protocol(protocol)
    floor = p.hue_chroma_floor if chroma_floor is None else float(chroma_floor)
    pred, target = _pair_one(pred, target, "hue_shift")
    w = _mask(mask, target.shape[-2:], "hue_shift")
    lab_p = srgb_to_lab(pred, check=False)
    lab_t = srgb_to_lab(target, check=False)
    considered = lab_t[0].numel() if w is None else int((w > 0).sum())
    dh, c_p, ws = _hue_delta(lab_p, lab_t, chroma(lab_t), w, floor)
    return _hue_stats(dh, c_p < floor, ws, considered)


# ----------------------------------------------------------------------------------------------
# PSNR and SSIM (batched, differentiable)
# ----------------------------------------------------------------------------------------------


def _pair_batched(pred: Tensor, target: Tensor, func: str) -> tuple[Tensor, Tensor, torch.dtype]:
    _image(pred, f"{func}: pred")
    _image(target, f"{func}: target")
    _same_shape(pred, target, func)
    dtype = torch.promote_types(pred.dtype, target.dtype)
    work = torch.float32 if dtype in REDUCED else dtype
    return pred.to(work), target.to(work), dtype


def _psnr_from_mse(mse: Tensor, data_range: float) -> Tensor:
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    mask: Tensor | None = None,
    per_channel: bool = False,
    reduction: Literal["none", "mean", "sum"] = "none",
) -> Tensor:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range² / MSE).

    MSE is the (weighted) mean of (pred - target)² over the three channels and the masked pixels
    of each image -- ``skimage.metrics.peak_signal_noise_ratio`` on one image. ``per_channel``
    gives one value per channel (last dim 3). Images ``(..., 3, H, W)``; result shape ``(...)``
    (``(..., 3)`` per channel) with ``reduction="none"``. Values are not range-checked
    (``data_range`` states the signal's range). ``inf`` for identical images, NaN for an empty
    mask. Differentiable. Computed in the inputs' dtype (float32 for half precisions).
    """
    pred, target, dtype = _pair_batched(pred, target, "psnr")
    mask = _mask(mask, target.shape[:-3] + target.shape[-2:], "psnr")
    sq = (pred - target) ** 2
    if mask is None:
        mse = sq.mean(dim=(-2, -1)) if per_channel else sq.mean(dim=(-3, -2, -1))
    else:
        w = mask.to(sq.dtype).unsqueeze(-3)
        sel = w > 0
        num = torch.where(sel, sq * w, torch.zeros_like(sq)).sum(dim=(-2, -1))
        den = w.sum(dim=(-2, -1))
        if per_channel:
            mse = num / den
        else:
            mse = num.sum(dim=-1) / (3.0 * den[..., 0])
    out = _psnr_from_mse(mse, data_range)
    return reduce(out, reduction, "psnr").to(dtype)


def _gaussian_window(win_size: int, sigma: float) -> list[float]:
    # scipy.ndimage's kernel: exp(-x² / (2 sigma²)), x = -r..r, normalised to sum 1 (float64).
    r = win_size // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).tolist()


def _blur_valid(x: Tensor, g: list[float]) -> Tensor:
    """Separable 'valid' filtering of the last two dims by ``g``: (..., H, W) -> (..., H - k + 1, W - k + 1).

    Written as k shifted multiply-adds per axis (memory-bound, several times faster than a
    grouped ``conv2d`` on CPU for an 11-tap kernel, and differentiable).
    """
    k = len(g)
    ho, wo = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    y = x[..., 0:ho, :] * g[0]
    for i in range(1, k):
        y = y.add_(x[..., i : i + ho, :], alpha=g[i])
    z = y[..., 0:wo] * g[0]
    for i in range(1, k):
        z = z.add_(y[..., i : i + wo], alpha=g[i])
    return z


def _ssim_check(pred: Tensor, win_size: int, sigma: float, func: str) -> None:
    if win_size < 1 or win_size % 2 != 1:
        raise UsageError(f"{func}: win_size must be a positive odd integer, got {win_size}")
    if not sigma > 0:
        raise UsageError(f"{func}: sigma must be > 0, got {sigma}")
    h, w = pred.shape[-2:]
    if h < win_size or w < win_size:
        raise ShapeError(f"{func}: images of shape {tuple(pred.shape)} are smaller than the {win_size}x{win_size} window")


def _ssim_terms(x: Tensor, y: Tensor, m: Tensor | None, g: list[float], c1: float, c2: float) -> Tensor:
    """SSIM map (Wang et al. 2004, eq. 13) of planes (P, H, W), valid region only.

    Moments are taken about a per-plane constant (the plane's mean, no gradient) and the
    constant is added back to the local means: mathematically the same SSIM, but the
    variances E[x²] - E[x]² no longer cancel catastrophically in float32 on flat regions.
    """
    if m is None:
        cx = x.detach().mean(dim=(-2, -1), keepdim=True)
        cy = y.detach().mean(dim=(-2, -1), keepdim=True)
        x, y = x - cx, y - cy
        # SSIM needs σx² + σy² only as a sum: blur x² + y² once (four moment maps, not five).
        ux, uy, uss, uxy = _blur_valid(torch.stack([x, y, x * x + y * y, x * y], dim=1), g).unbind(1)
        return _ssim_formula(ux, uy, uss - ux * ux - uy * uy, uxy - ux * uy, cx, cy, c1, c2)
    else:
        # Normalised convolution (Knutsson & Westin 1993): local moments weighted by g * m,
        # renormalised by (g * m); masked-out pixels are zeroed (so NaN there cannot leak).
        sel = m > 0
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        m = torch.where(sel, m, zero)
        n = m.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
        cx = (torch.where(sel, x, zero) * m).detach().sum(dim=(-2, -1), keepdim=True) / n
        cy = (torch.where(sel, y, zero) * m).detach().sum(dim=(-2, -1), keepdim=True) / n
        x = torch.where(sel, x - cx, zero)
        y = torch.where(sel, y - cy, zero)
        mx, my = m * x, m * y
        den, sx, sy, sxx, syy, sxy = _blur_valid(torch.stack([m, mx, my, mx * x, my * y, mx * y], dim=1), g).unbind(1)
        den = torch.where(den > 0, den, torch.ones((), dtype=den.dtype, device=den.device))
        ux, uy, uxx, uyy, uxy = (v / den for v in (sx, sy, sxx, syy, sxy))
    return _ssim_formula(ux, uy, (uxx - ux * ux) + (uyy - uy * uy), uxy - ux * uy, cx, cy, c1, c2)


def _ssim_formula(ux: Tensor, uy: Tensor, v_sum: Tensor, vxy: Tensor, cx: Tensor, cy: Tensor, c1: float, c2: float) -> Tensor:
    """Wang et al. 2004, eq. 13, from the local means about (cx, cy), σx² + σy² and σxy."""
    ux, uy = ux + cx, uy + cy
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = v_sum + c2
    return (a1 * a2) / (b1 * b2)


#: Output pixels (per plane) per strip of rows in :func:`ssim`: the five moment planes of a strip
#: stay cache-resident (3.5x faster than whole-image passes at 1 MP) and memory stays bounded.
_SSIM_STRIP = 1 << 14


def _ssim_planes(
    x: Tensor, y: Tensor, m: Tensor | None, win_size: int, sigma: float, c1: float, c2: float, work: torch.dtype,
    kernel: Callable[..., list[Tensor]] | None = None,
) -> Tensor:
    """Mean SSIM of each plane (P, H, W), in strips of output rows, each strip converted to ``work``.

    ``kernel``: the fused :func:`_ssim_strip_sums` (``_SSIM_KERNEL``, unmasked three-plane
    float64 strips of ``_SSIM_KERNEL_ROWS`` output rows, 11-tap sigma-1.5 window, width >= 12);
    the caller checks those conditions (:func:`_metric_kernels`).
    """
    h, w = x.shape[-2:]
    g = _gaussian_window(win_size, sigma)
    r = win_size // 2
    h_out = h - 2 * r
    num = torch.zeros(x.shape[0], dtype=work, device=x.device)
    den = torch.zeros_like(num)
    if kernel is not None:
        rows = _SSIM_KERNEL_ROWS
        consts = [c1, c2, 0.0]
        for r0 in range(0, h_out, rows):
            r1 = min(r0 + rows, h_out)
            xs, ys = x[:, r0 : r1 + 2 * r].to(work), y[:, r0 : r1 + 2 * r].to(work)
            if r1 - r0 < rows:  # the last strip: zero rows below, excluded by the row count
                xs, ys = (torch.nn.functional.pad(v, (0, 0, 0, rows - (r1 - r0))) for v in (xs, ys))
            consts[2] = float(r1 - r0)
            num = num + kernel(xs.contiguous(), ys.contiguous(), torch.tensor(consts, dtype=work))[0]
            den = den + (r1 - r0) * (w - 2 * r)
        return num / den
    zero = torch.zeros((), dtype=work, device=x.device)
    rows = max(1, _SSIM_STRIP // max(w, 1))
    for r0 in range(0, h_out, rows):  # output rows r0..r1 need input rows r0..r1 + 2r
        r1 = min(r0 + rows, h_out)
        ms = None if m is None else m[:, r0 : r1 + 2 * r].to(work)
        s = _ssim_terms(x[:, r0 : r1 + 2 * r].to(work), y[:, r0 : r1 + 2 * r].to(work), ms, g, c1, c2)
        if ms is None:
            num = num + s.sum(dim=(-2, -1))
            den = den + s.shape[-2] * s.shape[-1]
        else:
            mc = ms[:, r:-r or None, r : w - r]
            num = num + torch.where(mc > 0, s * mc, zero).sum(dim=(-2, -1))
            den = den + mc.sum(dim=(-2, -1))
    return num / den


def ssim_map(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-channel SSIM map of the valid region: shape ``(..., 3, H - 2r, W - 2r)``, r = win_size // 2.

    SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), C1 = (k1 L)²,
    C2 = (k2 L)², L = ``data_range`` (Wang, Bovik, Sheikh & Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP 13(4), 2004), with
    local moments under a normalised Gaussian window (population covariance). Position (i, j)
    of the map is the window centred on pixel (i + r, j + r); the border pixels closer than r to
    an edge have no full window and no map value (scikit-image computes them with reflected
    borders and then crops them away, so the retained values are identical). Differentiable.
    """
    pred, target, dtype = _pair_batched(pred, target, "ssim_map")
    _ssim_check(pred, win_size, sigma, "ssim_map")
    lead, (h, w) = pred.shape[:-3], pred.shape[-2:]
    g = _gaussian_window(win_size, sigma)
    s = _ssim_terms(pred.reshape(-1, h, w), target.reshape(-1, h, w), None, g, (k1 * data_range) ** 2, (k2 * data_range) ** 2)
    return s.reshape(*lead, 3, s.shape[-2], s.shape[-1]).to(dtype)


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    data_range: float = 1.0,
    reduction: Literal["none", "mean", "sum"] = "none",
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) of each image, averaged over RGB channels.

    Defaults follow Wang et al.: Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03,
    population covariance, ``data_range`` L = 1 for [0, 1] images. Unmasked, the value equals
    ``skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=0)``: the mean of the SSIM map over
    the valid region (pixels at least r = 5 from every edge), averaged over the channels
    (parity <= 1e-12 in float64, tests/test_metrics.py).

    ``mask`` (``(..., H, W)``, bool or float weights): *masked SSIM by normalised convolution*
    (Knutsson & Westin 1993). Local means and (co)variances use the window weights g * m
    renormalised by (g * m), so masked-out pixels contribute nothing; the map is then averaged
    with weights m over the valid region. An all-ones mask gives the unmasked value; an empty
    mask (within the valid region) gives NaN.

    Images ``(..., 3, H, W)`` with H, W >= ``win_size`` (else :class:`~colorfid.errors.ShapeError`);
    returns shape ``(...)`` for ``reduction="none"``, a scalar for ``"mean"``/``"sum"``. In
    [-1, 1], 1 for identical images. Differentiable: a loss is ``1 - ssim(pred, target,
    reduction="mean")``. Values are not range-checked. Computed in the inputs' dtype (float32
    for half precisions).
    """
    pred, target, dtype = _pair_batched(pred, target, "ssim")
    _ssim_check(pred, win_size, sigma, "ssim")
    mask = _mask(mask, target.shape[:-3] + target.shape[-2:], "ssim")
    lead, (h, w) = pred.shape[:-3], pred.shape[-2:]
    m = None if mask is None else mask.to(pred.dtype).unsqueeze(-3).expand(*lead, 3, h, w).reshape(-1, h, w)
    per_plane = _ssim_planes(pred.reshape(-1, h, w), target.reshape(-1, h, w), m, win_size, sigma,
                             (k1 * data_range) ** 2, (k2 * data_range) ** 2, pred.dtype)
    out = per_plane.reshape(*lead, 3).mean(dim=-1)
    return reduce(out, reduction, "ssim").to(dtype)


# ----------------------------------------------------------------------------------------------
# Health flags
# ----------------------------------------------------------------------------------------------


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
    +Inf -> 1, then clamped to [0, 1]), as :func:`image_metrics` does.
    """
    p = _protocol(protocol)
    pred = _one_image(pred, "health_flags: pred")
    if target is not None:
        target = _one_image(target, "health_flags: target")
        _same_shape(pred, target, "health_flags")
        target = _srgb(target, "health_flags: target")
    with torch.no_grad():
        raw = pred.detach()
        clean = _sanitize(raw)
        acc = _acc_dtype(raw.device)
        grey = (clean.amax(dim=-3) - clean.amin(dim=-3)) <= p.grey_tolerance
        colourful = None if target is None else (target.amax(dim=-3) - target.amin(dim=-3)) > p.grey_tolerance
        sat = hsv_saturation(clean, check=False).to(acc)
        sat_t = None if target is None else hsv_saturation(target, check=False).to(acc)
        return _health(
            *_bad_value_counts(raw), raw.numel(), grey.numel(), int(grey.sum()),
            None if colourful is None else int(colourful.sum()),
            None if colourful is None else int((grey & colourful).sum()),
            float(sat.sum()), None if sat_t is None else float(sat_t.sum()), p,
        )


def _health(
    nonfinite: int,
    out_of_range: int,
    total: int,
    n: int,
    grey_count: float,
    colourful_count: float | None,
    grey_colourful_count: float | None,
    sat_sum: float,
    target_sat_sum: float | None,
    p: MetricProtocol,
) -> dict[str, float | int | str]:
    """Assemble the health flags from their ingredients: bad-value counts over ``total`` values,
    ``n`` pixels of which ``grey_count`` are grey in the prediction, ``colourful_count`` are not
    grey in the target (None: no target) and ``grey_colourful_count`` both; HSV saturation sums."""
    grey_fraction = grey_count / n if n else _NAN
    out: dict[str, float | int | str] = {
        "out_of_range_frac": out_of_range / total if total else _NAN,
        "nonfinite_count": nonfinite,
        "grey_fraction": grey_fraction,
    }
    if colourful_count is not None:
        k = colourful_count
        out["grey_collapse"] = grey_colourful_count / k if k else _NAN  # type: ignore[operator]
    else:
        out["grey_collapse"] = grey_fraction
    mean_sat = sat_sum / n if n else _NAN
    out["mean_saturation"] = mean_sat
    out["low_color"] = _low_color_level(mean_sat, p)
    if target_sat_sum is not None:
        out["target_mean_saturation"] = target_sat_sum / n if n else _NAN
    return out


# ----------------------------------------------------------------------------------------------
# The flat per-image metric dict
# ----------------------------------------------------------------------------------------------

#: Pixels per strip of the eager per-pixel pass of :func:`image_metrics`: temporaries of
#: 512 KiB (float64) stay cache-resident and memory stays bounded.
_STRIP_PIXELS = 1 << 16
#: Pixels per call of the fused per-pixel kernel (its one static shape; the last chunk is padded).
_PIXEL_CHUNK = 1 << 15
#: Output rows per call of the fused SSIM kernel (its width is dynamic, >= 12).
_SSIM_KERNEL_ROWS = 32
_PIXEL_KERNEL = "metrics_pixels_f64"
_SSIM_KERNEL = "metrics_ssim11_f64"
_N_SUMS = 14


def _pixel_terms(
    x: Tensor, t: Tensor, thr: Sequence[Any], valid: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The per-pixel work of :func:`image_metrics` on ``(3, N)`` strips: the sanitised
    prediction ``x`` and the target ``t`` (sRGB in [0, 1], one float dtype).

    ``thr`` = (hc_saturation, grey_tolerance, hc_chroma, hue_chroma_floor) as floats (eager) or
    0-d tensors (the fused kernel, so one build serves every protocol). ``valid`` (float 0/1 per
    pixel, or None for all) excludes padding from the counts; padded pixels are zeros in both
    images, whose values add exactly 0 to the value sums.

    Returns, per pixel: ΔE00, the high-chroma selector (GT HSV S >= hc_saturation), the hue
    selector (high chroma and GT C*ab >= floor), Δh (:func:`hue_angle_delta`, degrees) and the
    prediction-under-the-floor selector (C*ab < floor); and the 14 sums, in the accumulation
    dtype: squared error, V pred, V GT, S pred, S GT, S pred and S GT over high chroma, C* pred
    and C* GT over GT C* >= hc_chroma, that count, the high-chroma count, grey pixels of the
    prediction (channel spread <= tolerance), non-grey pixels of the GT, and both. Selectors
    are float 0/1 (see :func:`colorfid.color._above`).

    This one function is both the eager path and the trace of the fused kernel.
    """
    hc_s, tol, hc_c, floor = thr
    acc = _acc_dtype(x.device)
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
    sums = torch.stack([
        (x - t).square().sum(dtype=acc), vx.sum(dtype=acc), vt.sum(dtype=acc),
        sp.sum(dtype=acc), st.sum(dtype=acc), (sp * hc).sum(dtype=acc), (st * hc).sum(dtype=acc),
        (cp * ccf).sum(dtype=acc), (ct * ccf).sum(dtype=acc), ccf.sum(dtype=acc), hc.sum(dtype=acc),
        grey.sum(dtype=acc), colourful.sum(dtype=acc), (grey * colourful).sum(dtype=acc),
    ])
    return de, hc, hue_sel, dh, pred_low, sums


class _PixelKernel(torch.nn.Module):
    """Traced into the fused kernel: ``x``, ``t`` (3, _PIXEL_CHUNK) float64; ``thr`` (5,) float64 =
    the four thresholds of :func:`_pixel_terms` and the number of valid (unpadded) pixels."""

    def forward(self, x: Tensor, t: Tensor, thr: Tensor) -> tuple[Tensor, ...]:
        hc_s, tol, hc_c, floor, n = thr.unbind(0)
        valid = below(torch.arange(x.shape[-1], dtype=x.dtype, device=x.device), n)
        return _pixel_terms(x, t, (hc_s, tol, hc_c, floor), valid)


#: The 11-tap sigma-1.5 window as Python floats, computed eagerly once (a trace sees constants).
_G11 = _gaussian_window(11, 1.5)


def _ssim_strip_sums(x: Tensor, y: Tensor, consts: Tensor) -> Tensor:
    """Per-plane sums of the SSIM map (:func:`_ssim_terms`, 11-tap sigma-1.5 window) over the
    first ``consts[2]`` output rows of a strip (P, rows + 10, W); ``consts[:2]`` = (C1, C2)."""
    c1, c2, n = consts.unbind(0)
    s = _ssim_terms(x, y, None, _G11, c1, c2)  # type: ignore[arg-type]
    rows = below(torch.arange(s.shape[-2], dtype=s.dtype, device=s.device), n)
    return (s.sum(dim=-1) * rows).sum(dim=-1)


class _SsimKernel(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor, consts: Tensor) -> Tensor:
        return _ssim_strip_sums(x, y, consts)


def _make_pixel_kernel() -> tuple[torch.nn.Module, tuple[Tensor, ...], Any]:
    g = torch.Generator().manual_seed(0)
    n = _PIXEL_CHUNK
    x = torch.rand(3, n, dtype=torch.float64, generator=g)
    t = torch.rand(3, n, dtype=torch.float64, generator=g)
    x[:, :64] = x[:, 64:128].mean(dim=0)  # greys, for the grey and zero-chroma branches
    thr = torch.tensor([0.5, 0.02, 40.0, 10.0, n - 100], dtype=torch.float64)
    return _PixelKernel(), (x, t, thr), None


def _make_ssim_kernel() -> tuple[torch.nn.Module, tuple[Tensor, ...], Any]:
    g = torch.Generator().manual_seed(0)
    shape = (3, _SSIM_KERNEL_ROWS + 10, 97)
    x = torch.rand(shape, dtype=torch.float64, generator=g)
    y = (x + 0.2 * torch.rand(shape, dtype=torch.float64, generator=g)).clamp(0.0, 1.0)
    consts = torch.tensor([0.01**2, 0.03**2, _SSIM_KERNEL_ROWS - 7], dtype=torch.float64)
    w = torch.export.Dim("width", min=12, max=1 << 20)
    return _SsimKernel(), (x, y, consts), ({2: w}, {2: w}, None)


_SOURCES = ("colorfid.color", "colorfid.difference", "colorfid.metrics")
_aot.register(_aot.KernelSpec(
    _PIXEL_KERNEL, "image_metrics per-pixel pass: Lab, CIEDE2000, HSV, chroma, hue, masks, sums; float64",
    _make_pixel_kernel, _SOURCES, {"chunk": _PIXEL_CHUNK},
))
_aot.register(_aot.KernelSpec(
    _SSIM_KERNEL, "image_metrics SSIM strips (11-tap Gaussian, sigma 1.5); float64",
    _make_ssim_kernel, _SOURCES, {"rows": _SSIM_KERNEL_ROWS},
))


def _metric_kernels(
    fused: bool | None, dtype: torch.dtype, device: torch.device
) -> tuple[Callable[..., list[Tensor]] | None, Callable[..., list[Tensor]] | None]:
    """(per-pixel kernel, SSIM kernel) for :func:`image_metrics`, or (None, None) for eager."""
    if fused is False:
        return None, None
    if dtype == torch.float64 and device.type == "cpu":
        px, ss = _aot.get(_PIXEL_KERNEL), _aot.get(_SSIM_KERNEL)
        if px is not None and ss is not None:
            return px, ss
    if fused:
        ok, why = _aot.supported()
        if dtype != torch.float64 or device.type != "cpu":
            reason = f"the fused kernels serve float64 on CPU, not {str(dtype).replace('torch.', '')} on {device.type}"
        elif not _aot.enabled():
            reason = "the fused kernels are disabled (COLORFID_KERNELS=0)"
        elif not ok:
            reason = why
        else:
            reason = f"the fused kernels are not built in {_aot.kernel_dir()}: run `colorfid kernels build`"
        raise KernelError(f"image_metrics(fused=True): {reason}")
    return None, None


def metric_kernels(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> str:
    """Which path :func:`image_metrics` takes by default for ``dtype`` on ``device``: ``"fused"``
    (the kernels of ``colorfid kernels build`` are built for this machine) or ``"eager"``."""
    px, _ = _metric_kernels(None, dtype, torch.device(device))
    return "eager" if px is None else "fused"


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
      RGB with data range 1; ``ssim`` as :func:`ssim`.

    Computed in ``dtype`` (float64, the reference precision, by default). Not differentiable.
    The per-pixel work (:func:`_pixel_terms`) runs in strips of pixels converted to ``dtype`` on
    the fly, so the working set stays near 90 bytes per pixel in float64 (measured: 342 MiB above
    the float32 inputs at 4 MP, eager).

    ``fused``: None (default) takes the fused CPU kernels when ``colorfid kernels build`` has
    built them for this machine (float64 on CPU; see :mod:`colorfid._aot`), else the eager path;
    False always eager; True requires the kernels (:class:`~colorfid.errors.KernelError` if they
    are not built). The kernels are traces of the same functions: values agree with the eager
    path to float rounding (<= 1e-12 relative, tests/test_kernels.py); their two passes are 4-7x
    faster than the eager ones, ``image_metrics`` as a whole ~2x (``python bench/bench_eval.py``).
    """
    _heap.warm()
    p = _protocol(protocol)
    pred = _one_image(pred, "image_metrics: pred")
    target = _one_image(target, "image_metrics: target")
    _same_shape(pred, target, "image_metrics")
    with torch.no_grad():
        t_in = _srgb(target.detach(), "image_metrics: target")
        raw = pred.detach()
        nonfinite, out_of_range = _bad_value_counts(raw)
        clean = _sanitize(raw)  # caller's dtype; strips are converted to ``dtype`` below
        h, w = t_in.shape[-2:]
        dev = t_in.device
        acc = _acc_dtype(dev)
        px_kernel, ssim_kernel = _metric_kernels(fused, dtype, dev)

        # Per-pixel maps kept: ΔE, the selectors and Δh; the ratios and counts are sums.
        n_px = h * w
        xf, tf = clean.reshape(3, n_px), t_in.reshape(3, n_px)
        de, hc, hue_sel, dh, pred_low = (torch.empty(n_px, dtype=dtype, device=dev) for _ in range(5))
        sums = torch.zeros(_N_SUMS, dtype=acc, device=dev)
        thr = (p.hc_saturation, p.grey_tolerance, p.hc_chroma, p.hue_chroma_floor)
        step = _PIXEL_CHUNK if px_kernel is not None else _STRIP_PIXELS
        for s in range(0, n_px, step):
            e = min(n_px, s + step)
            xs, ts = xf[:, s:e].to(dtype), tf[:, s:e].to(dtype)
            if px_kernel is not None:
                if e - s < step:  # the last chunk: zero pixels after it, excluded by the count
                    xs, ts = (torch.nn.functional.pad(v, (0, step - (e - s))) for v in (xs, ts))
                outs = px_kernel(xs.contiguous(), ts.contiguous(), torch.tensor([*thr, e - s], dtype=dtype))
            else:
                outs = _pixel_terms(xs, ts, thr)
            for buf, o in zip((de, hc, hue_sel, dh, pred_low), outs):
                buf[s:e] = o[: e - s]
            sums += outs[5]
        del xs, ts, outs
        sv = sums.tolist()
        n_hc = int(sv[10])
        health = _health(nonfinite, out_of_range, raw.numel(), n_px, sv[11], sv[12], sv[13], sv[3], sv[4], p)

        def mean(total: float, n: float) -> float:
            return total / n if n else _NAN

        psnr_value = float(_psnr_from_mse(sums[0] / (3 * n_px), 1.0))
        ssim_value = _NAN
        if min(h, w) >= 11:
            use = ssim_kernel if w >= 12 else None
            ssim_value = float(_ssim_planes(clean, t_in, None, 11, 1.5, 0.01**2, 0.03**2, dtype, use).mean())
        del clean, t_in

        de_all = summarize(de)
        de_hc = summarize(de, hc > 0.5)
        sel = hue_sel > 0.5
        hue = _hue_stats(dh[sel], pred_low[sel], None, n_hc)

        out = {
            "de00_mean": de_all["mean"],
            "de00_median": de_all["median"],
            "de00_p95": de_all["p95"],
            "de00_p99": de_all["p99"],
            "de00_max": de_all["max"],
            "de00_hc_p95": de_hc["p95"],
            "sat_ratio": _ratio(mean(sv[3], n_px), mean(sv[4], n_px)),
            "sat_ratio_hc": _ratio(mean(sv[5], n_hc), mean(sv[6], n_hc)),
            "chroma_ratio_hc": _ratio(mean(sv[7], sv[9]), mean(sv[8], sv[9])),
            "hue_shift_hc_mean": hue["mean_abs"],
            "hue_shift_hc_p95": hue["p95"],
            "hue_drift_hc": hue["signed_mean"],
            "brightness_ratio": _ratio(mean(sv[1], n_px), mean(sv[2], n_px)),
            "psnr": psnr_value,
            "ssim": ssim_value,
            "out_of_range_frac": float(health["out_of_range_frac"]),
            "nonfinite_count": float(health["nonfinite_count"]),
            "grey_collapse": float(health["grey_collapse"]),
            "mean_saturation": float(health["mean_saturation"]),
            "hc_fraction": mean(n_hc, n_px),
        }
    assert list(out) == list(METRICS), "image_metrics and METRICS out of step"
    return {k: float(v) for k, v in out.items()}
