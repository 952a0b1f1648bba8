"""The metric protocol: the thresholds that define the masked statistics (results record it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .._format import did_you_mean
from ..errors import ConfigError

__all__ = ["MetricProtocol", "as_protocol"]


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
    ratio_floor:
        The whole-image ratios pred / GT of a mean -- ``sat_ratio`` (HSV S) and
        ``brightness_ratio`` (HSV V), both in [0, 1] -- are defined only where the GT's mean is at
        least this; below it they are NaN and the absolute differences ``sat_diff`` /
        ``brightness_diff`` carry the information. On a near-grey GT (mean S 0.035) a prediction
        0.015 more saturated reads "x1.43", a ratio of two near-zero means that looks like gross
        over-saturation. Default 0.10: the line under which the protocol calls an image
        low-colour (``low_color_min``); for V, a near-black image (mean max(R, G, B) < 26/255).
        The ``*_hc`` ratios need no floor: their masks keep only GT pixels with S >=
        ``hc_saturation`` (or C*ab >= ``hc_chroma``), so their denominators are at least that.
    worst_k:
        How many worst images reports and results list per set (default 3).
    image_chroma_floor:
        The whole-image colour statistics (``chroma_ratio``, ``hue_spread_ratio``,
        ``hue_collapse``) need the GT's mean chroma C*ab to be at least this, and the hue ones
        also its hue-dispersed chroma C̄ (1 - R̄) (CIE units; default 2.3, one just-noticeable
        difference in ΔE*ab, Mahy et al. 1994): below it the GT has no colour (no hue diversity)
        to keep, and the key is NaN.
    """

    hc_saturation: float = 0.5
    hc_chroma: float = 40.0
    hue_chroma_floor: float = 10.0
    grey_tolerance: float = 0.02
    low_color_min: float = 0.10
    low_color_critical: float = 0.04
    ratio_floor: float = 0.10
    worst_k: int = 3
    image_chroma_floor: float = 2.3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            want_int = f.type in (int, "int")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (want_int and not isinstance(v, int)):
                kind = "an integer" if want_int else "a number"
                raise ConfigError(f"MetricProtocol.{f.name}: expected {kind}, got {v!r}")
            try:
                finite = math.isfinite(v)
            except OverflowError:  # an integer beyond float range
                finite = False
            if not finite or v < 0:
                shown = f"an integer of {len(str(abs(v)))} digits" if isinstance(v, int) and not finite else repr(v)
                raise ConfigError(f"MetricProtocol.{f.name}: must be finite and >= 0, got {shown}")
            if not want_int:
                object.__setattr__(self, f.name, float(v))
        if self.hc_saturation > 1:
            raise ConfigError(f"MetricProtocol.hc_saturation: HSV saturation lies in [0, 1], got {self.hc_saturation}")
        if self.ratio_floor > 1:
            raise ConfigError(f"MetricProtocol.ratio_floor: HSV S and V lie in [0, 1], got {self.ratio_floor}")
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
            hints = [f"{k!r}{did_you_mean(str(k), known)}" for k in unknown]
            raise ConfigError(f"unknown protocol key(s) {', '.join(hints)}; known keys: {', '.join(known)}")
        return cls(**dict(d))


def as_protocol(protocol: MetricProtocol | Mapping[str, Any] | None) -> MetricProtocol:
    """``protocol`` as a :class:`MetricProtocol` (None: the defaults; a mapping: its fields)."""
    if protocol is None:
        return MetricProtocol()
    if isinstance(protocol, MetricProtocol):
        return protocol
    return MetricProtocol.from_dict(protocol)
