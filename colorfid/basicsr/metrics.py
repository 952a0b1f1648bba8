"""colorfid's image metrics with BasicSR's metric calling convention.

BasicSR's validation loop (``SRModel.nondist_validation``) turns the network output and the GT of
each validation image into 8-bit images with ``basicsr.utils.tensor2img`` -- ``(H, W, 3)`` uint8,
**BGR** channel order, clamped to [0, 1] and rounded -- and calls every metric of ``val.metrics``
once per image::

    value = METRIC_REGISTRY.get(opt.pop("type"))(img=sr_img, img2=gt_img, **opt)

(NAFNet's fork of BasicSR calls ``getattr(basicsr.metrics, type)(sr_img, gt_img, **opt)``.) It
averages the values over the images itself and, in upstream BasicSR, tracks the best value with
the YAML's ``better: higher|lower`` (default ``higher``).

This module gives one such function per key of :data:`colorfid.metrics.METRICS`, named
``colorfid_<key>`` (``colorfid_sat_ratio_hc``, ``colorfid_de00_p95``, ...), returning exactly
``colorfid.metrics.image_metrics(pred, gt)[key]`` for the same images, where ``pred`` / ``gt`` are
the RGB float images ``colorfid.color.to_float`` makes of the 8-bit images BasicSR hands over
(the metric sees the 8-bit images, as BasicSR's own PSNR does). ``img`` is the prediction,
``img2`` the ground truth.

Metrics whose best value is a target (``sat_ratio*``, ``chroma_ratio_hc``, ``brightness_ratio``:
1.0; ``hue_drift_hc``: 0.0) have no "higher" or "lower" for BasicSR's best tracking. They get a
second function, ``colorfid_<key>_deviation`` = ``|value - target|`` (better: lower), for
``better``-based tracking; the raw value is still registered for the log (``better: target`` is
understood by :class:`colorfid.basicsr.model` 's model types only).

Options (YAML keys of a ``val.metrics`` entry besides ``type``)
---------------------------------------------------------------
``crop_border`` [0]
    Pixels cut from each edge before measuring, as BasicSR's ``calculate_psnr``.
``input_order`` ['HWC']
    ``'HWC'`` or ``'CHW'``, as BasicSR.
``test_y_channel`` [false]
    Accepted only as false: colour metrics on the luma channel make no sense (ConfigError).
``channel_order`` ['BGR']
    ``'BGR'`` (what ``tensor2img`` gives by default) or ``'RGB'`` (NAFNet's fork with
    ``val.rgb2bgr: false``).
``better``
    BasicSR's best-tracking direction; checked against colorfid's registry (a contradiction raises).
``protocol``
    :class:`colorfid.metrics.MetricProtocol` overrides (``{hc_saturation: 0.4}``).

Any other key raises :class:`~colorfid.errors.ConfigError` (BasicSR's own metrics swallow
misspelt keys).

Cost: BasicSR calls N metrics on the same image pair one after the other; the first computes
:func:`colorfid.metrics.image_metrics` once (every key) and the others reuse it. The cache holds
one entry, keyed by the options and by copies of both images' bytes (compared in full, so an
array whose memory was reused or changed in place is never mistaken for the previous image).
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, DTypeError, ShapeError, UnknownNameError

__all__ = [
    "PREFIX",
    "DEVIATION_SUFFIX",
    "BasicSRMetric",
    "basicsr_metrics",
    "get_basicsr_metric",
    "to_rgb_tensor",
    "clear_cache",
    "cache_info",
]

#: Prefix of every registered name: BasicSR's registry is flat and refuses duplicates.
PREFIX = "colorfid_"
#: Suffix of the monotone variant of a target metric: ``|value - target|``, better lower.
DEVIATION_SUFFIX = "_deviation"

_ORDERS = ("HWC", "CHW")
_CHANNEL_ORDERS = ("BGR", "RGB")
_BETTER = ("higher", "lower", "target")


@dataclass(frozen=True)
class BasicSRMetric:
    """What one registered BasicSR metric computes and which way BasicSR should track it."""

    name: str  #: registered name, e.g. ``colorfid_sat_ratio_hc``
    key: str  #: the :data:`colorfid.metrics.METRICS` key it reads
    better: str  #: ``higher`` / ``lower`` / ``target``
    target: float | None  #: the best value for ``better == "target"``
    deviation: bool  #: True: the value is ``|image_metrics[key] - target|``

    @property
    def basicsr_better(self) -> str | None:
        """What to write as ``better:`` in BasicSR's YAML; None when BasicSR cannot track it."""
        return None if self.better == "target" else self.better


# ----------------------------------------------------------------------------------------------
# Conversion of BasicSR's images
# ----------------------------------------------------------------------------------------------


def _check_image(x: Any, which: str, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        kind = type(x).__module__ + "." + type(x).__name__
        raise DTypeError(
            f"{name}: {which} must be a numpy uint8 image as basicsr.utils.tensor2img returns, got {kind}"
            + ("; in NAFNet's fork set val.use_image: true" if "torch" in kind else "")
        )
    if x.dtype != np.uint8:
        raise DTypeError(
            f"{name}: {which} must be uint8 (BasicSR's tensor2img output), got {x.dtype}; colorfid's "
            "metrics read 8-bit images here (for float images call colorfid.image_metrics directly)"
        )
    if x.ndim != 3:
        raise ShapeError(
            f"{name}: {which} must be a 3-channel colour image (H, W, 3) or (3, H, W), got shape {x.shape}"
            + ("; a greyscale image has no colour to measure" if x.ndim == 2 else "")
        )
    return x


def to_rgb_tensor(img: np.ndarray, *, input_order: str = "HWC", channel_order: str = "BGR",
                  crop_border: int = 0, name: str = "colorfid") -> Any:
    """BasicSR's 8-bit image -> colorfid's ``(3, H, W)`` float64 sRGB tensor in [0, 1].

    Reorders like BasicSR's ``reorder_image`` (``'CHW'`` -> HWC), crops like ``calculate_psnr``
    (``crop_border`` pixels off each edge), flips BGR to RGB, and converts with
    :func:`colorfid.color.to_float` (code / 255 in float64). Options are checked as in
    :func:`get_basicsr_metric`'s functions.
    """
    import torch

    from ..color import to_float

    img = _check_image(img, "img", name)
    _check_orders(input_order, channel_order, name)
    hwc = img.transpose(1, 2, 0) if input_order == "CHW" else img
    if hwc.shape[2] != 3:
        raise ShapeError(
            f"{name}: expected 3 channels in input_order {input_order!r}, got shape {img.shape}"
            + (f" (did you mean input_order: {'CHW' if input_order == 'HWC' else 'HWC'}?)" if 3 in img.shape else "")
        )
    c = _check_crop(crop_border, hwc.shape[:2], name)
    if c:
        hwc = hwc[c:-c, c:-c, :]
    if channel_order == "BGR":
        hwc = hwc[:, :, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))
    return to_float(t, torch.float64)


def _check_orders(input_order: Any, channel_order: Any, name: str) -> None:
    if input_order not in _ORDERS:
        raise UnknownNameError(f"{name}: input_order must be one of {list(_ORDERS)} (as BasicSR), got {input_order!r}")
    if channel_order not in _CHANNEL_ORDERS:
        raise UnknownNameError(f"{name}: channel_order must be one of {list(_CHANNEL_ORDERS)}, got {channel_order!r}")


def _check_crop(crop_border: Any, hw: tuple[int, int], name: str) -> int:
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ConfigError(f"{name}: crop_border must be an integer >= 0, got {crop_border!r}")
    c = int(crop_border)
    if 2 * c >= min(hw):
        raise ShapeError(f"{name}: crop_border {c} leaves no pixels of an image of {hw[0]}x{hw[1]}")
    return c


# ----------------------------------------------------------------------------------------------
# One-entry cache: N metrics on one image pair cost one image_metrics call
# ----------------------------------------------------------------------------------------------


class _LastPair:
    """The last (options, img, img2) -> image_metrics result; byte-exact comparison."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.key: tuple | None = None
        self.img: np.ndarray | None = None
        self.img2: np.ndarray | None = None
        self.result: dict[str, float] | None = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _same(a: np.ndarray | None, b: np.ndarray) -> bool:
        return a is not None and a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))

    def get(self, key: tuple, img: np.ndarray, img2: np.ndarray) -> dict[str, float] | None:
        if key == self.key and self._same(self.img, img) and self._same(self.img2, img2):
            self.hits += 1
            return self.result
        return None

    def put(self, key: tuple, img: np.ndarray, img2: np.ndarray, result: dict[str, float]) -> None:
        self.misses += 1
        self.key, self.img, self.img2, self.result = key, img.copy(), img2.copy(), result


_CACHE = _LastPair()


def clear_cache() -> None:
    """Forget the cached image pair (and reset :func:`cache_info`'s counters)."""
    with _CACHE.lock:
        _CACHE.clear()


def cache_info() -> dict[str, int]:
    """``{"hits": ..., "misses": ...}`` of the one-entry image-pair cache since the last clear."""
    return {"hits": _CACHE.hits, "misses": _CACHE.misses}


def _metrics_of(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str,
                channel_order: str, protocol: Any, name: str) -> dict[str, float]:
    from ..metrics import image_metrics

    key = (crop_border, input_order, channel_order, protocol)
    with _CACHE.lock:
        hit = _CACHE.get(key, img, img2)
        if hit is not None:
            return hit
        pred = to_rgb_tensor(img, input_order=input_order, channel_order=channel_order,
                             crop_border=crop_border, name=name)
        gt = to_rgb_tensor(img2, input_order=input_order, channel_order=channel_order,
                           crop_border=crop_border, name=name)
        result = image_metrics(pred, gt, protocol=protocol)
        _CACHE.put(key, img, img2, result)
        return result


# ----------------------------------------------------------------------------------------------
# The functions
# ----------------------------------------------------------------------------------------------


def _protocol(value: Any, name: str) -> Any:
    from ..metrics import MetricProtocol

    if value is None or isinstance(value, MetricProtocol):
        return value
    if isinstance(value, Mapping):
        try:
            return MetricProtocol.from_dict(dict(value))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: protocol: {exc}") from exc
    raise ConfigError(f"{name}: protocol must be a mapping of MetricProtocol fields, got {type(value).__name__}")


def _check_better(better: Any, spec: BasicSRMetric) -> None:
    if better is None:
        return
    if better not in _BETTER:
        raise ConfigError(f"{spec.name}: better must be 'higher' or 'lower' (or 'target'), got {better!r}")
    if better != spec.better:
        if spec.better == "target":
            raise ConfigError(
                f"{spec.name}: better: {better} contradicts colorfid: {spec.key} is best at {spec.target:g}, "
                f"neither higher nor lower; track {spec.name}{DEVIATION_SUFFIX} (better: lower) instead, "
                "or use model_type ColorfidSRModel, which understands better: target"
            )
        raise ConfigError(f"{spec.name}: better: {better} contradicts colorfid, where {spec.key} is better "
                          f"{spec.better}; write better: {spec.better}")


def _make(spec: BasicSRMetric) -> Callable[..., float]:
    def metric(img: Any = None, img2: Any = None, crop_border: int = 0, input_order: str = "HWC",
               test_y_channel: bool = False, *, channel_order: str = "BGR", better: str | None = None,
               protocol: Any = None, **unknown: Any) -> float:
        name = spec.name
        if unknown:
            raise ConfigError(
                f"{name}: unknown option(s) {', '.join(sorted(map(str, unknown)))}; known: crop_border, "
                "input_order, test_y_channel, channel_order, better, protocol"
            )
        if test_y_channel:
            raise ConfigError(f"{name}: test_y_channel: true measures the luma channel only, where colour metrics "
                              "make no sense; remove it (or set it to false) for colorfid metrics")
        _check_better(better, spec)
        if img is None or img2 is None:
            raise ConfigError(f"{name}: needs the prediction (img) and the ground truth (img2); this validation "
                              "set has no GT")
        _check_image(img, "img", name)
        _check_image(img2, "img2", name)
        if img.shape != img2.shape:
            raise ShapeError(f"{name}: img and img2 differ in shape: {img.shape} vs {img2.shape}")
        _check_orders(input_order, channel_order, name)
        crop = _check_crop(crop_border, img.shape[1:] if input_order == "CHW" else img.shape[:2], name)
        values = _metrics_of(img, img2, crop, input_order, channel_order, _protocol(protocol, name), name)
        v = values[spec.key]
        return abs(v - spec.target) if spec.deviation else v  # type: ignore[operator]

    metric.__name__ = metric.__qualname__ = spec.name
    metric.__module__ = __name__
    what = f"|{spec.key} - {spec.target:g}|" if spec.deviation else spec.key
    better = spec.basicsr_better or f"target {spec.target:g} (BasicSR cannot track it; see {spec.name}{DEVIATION_SUFFIX})"
    metric.__doc__ = (
        f"BasicSR metric: colorfid's ``{what}`` of one image (better: {better}).\n\n"
        "``img`` = prediction, ``img2`` = ground truth, 8-bit images as basicsr.utils.tensor2img gives "
        "them (HWC BGR uint8). See :mod:`colorfid.basicsr.metrics` for the options."
    )
    metric.colorfid_spec = spec  # type: ignore[attr-defined]
    return metric


def _build() -> dict[str, Callable[..., float]]:
    from ..metrics import METRICS

    out: dict[str, Callable[..., float]] = {}
    for key, ms in METRICS.items():
        base = BasicSRMetric(PREFIX + key, key, ms.direction, ms.target, False)
        out[base.name] = _make(base)
        if ms.direction == "target":
            dev = BasicSRMetric(PREFIX + key + DEVIATION_SUFFIX, key, "lower", ms.target, True)
            out[dev.name] = _make(dev)
    return out


_FUNCTIONS: dict[str, Callable[..., float]] | None = None


def basicsr_metrics() -> dict[str, Callable[..., float]]:
    """Every BasicSR metric function by its registered name (one per METRICS key, plus the
    ``_deviation`` variant of each target metric), in METRICS order. Built once."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _build()
    return dict(_FUNCTIONS)


def get_basicsr_metric(name: str) -> Callable[..., float]:
    """The function registered as ``name``; :class:`~colorfid.errors.UnknownNameError` (with the
    closest name) otherwise. The :class:`BasicSRMetric` is its ``colorfid_spec`` attribute."""
    fns = basicsr_metrics()
    try:
        return fns[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(fns), 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(f"unknown colorfid BasicSR metric {name!r}{hint}; known: {', '.join(fns)}") from None
