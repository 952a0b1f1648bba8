"""The metric registry: every key :func:`~colorfid.metrics.image_metrics` returns, its unit,
its meaning and which way is better -- the one list the gate, results and report validate names
against, and the one definition of how bad a value is (:meth:`MetricSpec.badness`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .._format import did_you_mean
from ..errors import ConfigError, UnknownNameError

__all__ = ["METRICS_VERSION", "COLOR_PIPELINE", "Direction", "MetricSpec", "METRICS", "get_metric", "badness"]


#: Version of the metric definitions below; stored in results files (``protocol.metrics_version``).
#: Bump it whenever a number :func:`~colorfid.metrics.image_metrics` returns would change for the same images.
#: 2: ``sat_ratio`` / ``brightness_ratio`` NaN under ``MetricProtocol.ratio_floor``; ``sat_diff``,
#: ``brightness_diff`` added.
#: 3: ``chroma_ratio``, ``hue_spread_ratio``, ``hue_collapse`` added (``MetricProtocol.image_chroma_floor``).
METRICS_VERSION = 3
#: The colour pipeline the metrics use, recorded in every results protocol.
COLOR_PIPELINE = (
    "sRGB (IEC 61966-2-1) -> linear -> XYZ (D65, Y=1) -> CIELAB (CIE 015:2018, D65 2deg); "
    "dE = CIEDE2000 (Sharma et al. 2005)"
)

Direction = Literal["lower", "higher", "target"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric key means and which way is better.

    ``direction`` is ``"lower"`` / ``"higher"`` (better) or ``"target"`` (best at ``target``; the
    distance ``|value - target|`` is what gets worse). ``label`` names the per-image statistic in
    words for tables (:attr:`title`; the statistic over a set's images is added by
    :func:`colorfid.results.aggregate_label`).
    """

    name: str
    direction: Direction
    target: float | None
    unit: str
    description: str
    label: str = ""

    @property
    def title(self) -> str:
        """The label in words, or the key where there is none."""
        return self.label or self.name

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher", "target"):
            raise ConfigError(f"MetricSpec {self.name!r}: direction must be lower|higher|target, got {self.direction!r}")
        if (self.direction == "target") != (self.target is not None):
            raise ConfigError(f"MetricSpec {self.name!r}: a target value is required exactly for direction 'target'")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def badness(self, value: float) -> float:
        """How bad ``value`` is on one "larger is worse" axis: ``value`` (lower is better),
        ``-value`` (higher is better) or ``|value - target|``."""
        if self.direction == "higher":
            return -value
        if self.direction == "target":
            return abs(value - self.target)  # type: ignore[operator]
        return value


def _spec(name: str, direction: Direction, unit: str, description: str, target: float | None = None) -> MetricSpec:
    return MetricSpec(name, direction, target, unit, description)


_HC = "high-chroma pixels (GT HSV saturation >= hc_saturation)"


#: The keys :func:`~colorfid.metrics.image_metrics` returns, in order, with their meaning. The one registry the
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
        _spec("sat_ratio", "target", "ratio", "Mean HSV saturation of the prediction / of the GT, all pixels; NaN where the GT's mean saturation is under ratio_floor (use sat_diff there).", 1.0),
        _spec("sat_ratio_hc", "target", "ratio", f"Mean HSV saturation pred / GT over {_HC}; < 1 = washed out.", 1.0),
        _spec("chroma_ratio_hc", "target", "ratio", "Mean CIELAB chroma C*ab pred / GT over pixels with GT C* >= hc_chroma.", 1.0),
        _spec("hue_shift_hc_mean", "lower", "degrees", f"Mean circular |Δh_ab| over {_HC} with GT C* >= hue_chroma_floor."),
        _spec("hue_shift_hc_p95", "lower", "degrees", "95th percentile of circular |Δh_ab| on the same pixels."),
        _spec("hue_drift_hc", "target", "degrees", "Circular mean of signed Δh_ab (pred - GT) in (-180, 180] on the same pixels.", 0.0),
        _spec("brightness_ratio", "target", "ratio", "Mean HSV value V = max(R, G, B) of the prediction / of the GT; NaN where the GT's mean V is under ratio_floor (use brightness_diff there).", 1.0),
        _spec("psnr", "higher", "dB", "PSNR over RGB, data range 1 (inf for identical images)."),
        _spec("ssim", "higher", "", "Mean SSIM over RGB channels, Gaussian window 11, sigma 1.5 (Wang et al. 2004); NaN below 11 px."),
        _spec("out_of_range_frac", "lower", "fraction", "Fraction of the prediction's values (pixel x channel) outside [0, 1], before clamping."),
        _spec("nonfinite_count", "lower", "count", "Number of NaN/Inf values in the prediction, before they are zeroed."),
        _spec("grey_collapse", "lower", "fraction", "Fraction of the GT's non-grey pixels that the prediction renders grey (channel spread <= grey_tolerance)."),
        _spec("mean_saturation", "higher", "HSV S", "Mean HSV saturation of the prediction (low colour: < low_color_min; critical: < low_color_critical)."),
        _spec("hc_fraction", "higher", "fraction", f"Fraction of the image that is {_HC}; a property of the GT that says how many pixels the *_hc keys rest on."),
        _spec("sat_diff", "target", "HSV S", "Mean HSV saturation of the prediction - of the GT, all pixels (defined where sat_ratio is not).", 0.0),
        _spec("brightness_diff", "target", "HSV V", "Mean HSV value V of the prediction - of the GT, all pixels (defined where brightness_ratio is not).", 0.0),
        _spec("chroma_ratio", "target", "ratio", "Mean CIELAB chroma C*ab of the prediction / of the GT over all pixels; 0 = grey, < 1 washed out or sepia; NaN when the GT's mean C* < image_chroma_floor.", 1.0),
        _spec("hue_spread_ratio", "target", "ratio", "Circular hue spread 1 - R̄ (chroma-weighted hue vectors; Mardia & Jupp 2000) of the prediction / of the GT; 0 = one hue (sepia) or grey; NaN when the GT's mean or hue-dispersed chroma < image_chroma_floor.", 1.0),
        _spec("hue_collapse", "target", "", "Signed change of hue concentration R̄ pred vs GT in [-1, 1]: +1 every colour in one hue (sepia / purple averaging), -1 no common hue (grey, or random hues); NaN as hue_spread_ratio.", 0.0),
    ]
}

#: Each key's per-image statistic in words (:attr:`MetricSpec.title`): what a table header shows.
_LABELS = {
    "de00_mean": "ΔE00, mean of pixels",
    "de00_median": "ΔE00, median of pixels",
    "de00_p95": "ΔE00, 95th pct of pixels",
    "de00_p99": "ΔE00, 99th pct of pixels",
    "de00_max": "ΔE00, worst pixel",
    "de00_hc_p95": "ΔE00, 95th pct of hc pixels",
    "sat_ratio": "sat. ratio, whole image",
    "sat_ratio_hc": "sat. ratio, hc pixels",
    "chroma_ratio_hc": "chroma ratio, hc pixels",
    "hue_shift_hc_mean": "hue shift °, mean of hc pixels",
    "hue_shift_hc_p95": "hue shift °, 95th pct of hc pixels",
    "hue_drift_hc": "hue drift °, hc pixels",
    "brightness_ratio": "brightness ratio, whole image",
    "psnr": "PSNR dB",
    "ssim": "SSIM",
    "out_of_range_frac": "values outside [0, 1]",
    "nonfinite_count": "NaN/Inf values",
    "grey_collapse": "colour pixels turned grey",
    "mean_saturation": "mean saturation of the output",
    "hc_fraction": "hc pixels in the GT",
    "sat_diff": "sat. difference, whole image",
    "brightness_diff": "brightness difference, whole image",
    "chroma_ratio": "chroma ratio, whole image",
    "hue_spread_ratio": "hue spread ratio, whole image",
    "hue_collapse": "hue collapse, whole image",
}
METRICS.update({k: replace(METRICS[k], label=v) for k, v in _LABELS.items() if k in METRICS})


def get_metric(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name``; :class:`~colorfid.errors.UnknownNameError` listing the
    known names (with the closest match) when it is not registered."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        hint = did_you_mean(str(name), list(METRICS))
        raise UnknownNameError(f"unknown metric {name!r}{hint}; known metrics: {', '.join(METRICS)}") from None


def badness(metric: str, value: float) -> float:
    """:meth:`MetricSpec.badness` of ``metric``; a name not in :data:`METRICS` counts as
    lower-is-better."""
    spec = METRICS.get(metric)
    return value if spec is None else spec.badness(value)
