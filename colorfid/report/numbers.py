"""Metric values in the report: which way is better, how a value compares with its baseline,
and the bound lines a trend plot draws."""

from __future__ import annotations

import re
from typing import Any, Mapping

from .._format import finite
from ..metrics import METRICS, badness

__all__ = ["direction_of", "badness_of", "direction_text", "delta_class", "bound_lines"]


def direction_of(name: str) -> tuple[str, float | None]:
    """(direction, target) of a registered metric; ("lower", None) for another name."""
    spec = METRICS.get(name)
    if spec is None:
        return "lower", None
    return str(spec.direction), spec.target


def badness_of(value: Any, name: str) -> float | None:
    """:func:`colorfid.metrics.badness` of a finite value (larger = worse); None when undefined."""
    v = finite(value)
    return None if v is None else badness(name, v)


def direction_text(name: str) -> str:
    direction, target = direction_of(name)
    if direction == "target":
        return f"closer to {target:g} is better"
    return f"{direction} is better"


def delta_class(value: Any, baseline: Any, name: str) -> str:
    """'better' / 'worse' / 'same' / '' of value against baseline under the metric's direction."""
    b_new, b_old = badness_of(value, name), badness_of(baseline, name)
    if b_new is None or b_old is None:
        return ""
    scale = max(abs(finite(value) or 0.0), abs(finite(baseline) or 0.0), 1e-12)
    if abs(b_new - b_old) <= 1e-9 * scale:
        return "same"
    return "better" if b_new < b_old else "worse"


_FLOAT_RE = r"[-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def bound_lines(bound: Any) -> list[float]:
    """Numbers to draw as bound lines: {max}/{min}/{target, band} dicts, numbers or bound text.

    Text: ``"<= 10"`` / ``"≤ 10.0"`` -> [10]; ``"1.0 ± 0.10"`` / ``"[0.9, 1.1]"`` -> [0.9, 1.1]; text
    after the first ``(`` or ``;`` (regression notes) is ignored.
    """
    if bound is None:
        return []
    if isinstance(bound, Mapping):
        lines = [finite(bound.get(k)) for k in ("min", "max")]
        t, band = finite(bound.get("target")), finite(bound.get("band"))
        if t is not None and band is not None:
            lines += [t - band, t + band]
        return sorted({x for x in lines if x is not None})
    f = finite(bound)
    if f is not None:
        return [f]
    text = re.split(r"[(;]", str(bound))[0]
    nums = [float(x.replace("−", "-")) for x in re.findall(_FLOAT_RE, text)]
    if ("±" in text or "+/-" in text or "+-" in text) and len(nums) >= 2:
        return [nums[0] - abs(nums[1]), nums[0] + abs(nums[1])]
    return nums[:2]
