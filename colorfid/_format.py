"""Number formatting for people, and the "did you mean" hint of unknown names.

A metric value reads the same wherever it is shown -- the gate's tables (``colorfid eval``, the
pytest failure table), the report, the demo, the trainer's validation table: :func:`sig` (4
significant digits), changes against a baseline :func:`signed`. Log lines of losses use
:func:`short`. Which statistic a value is comes from :func:`colorfid.results.aggregate_label`."""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

__all__ = ["did_you_mean", "finite", "sig", "signed", "short"]


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """``" (did you mean 'x'?)"`` with the closest of ``known``, or ``""``."""
    m = difflib.get_close_matches(str(word), list(known), 1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def finite(v: Any) -> float | None:
    """A finite float or None (null / NaN / inf / non-numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def sig(v: float | None) -> str:
    """A metric value: 4 significant digits (3 beyond [0.001, 1000)); "-" for None."""
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000 or a < 0.001:
        return f"{v:.3g}"
    return f"{v:.4g}"


def signed(v: float | None) -> str:
    """A change (value - baseline): :func:`sig` with an explicit "+" on positive values."""
    if v is None:
        return "-"
    return ("+" if v > 0 else "") + sig(v)


def short(x: Any) -> str:
    """Log lines: 4 significant digits of anything ``float()`` takes (a 0-d tensor too); "n/a"
    for None."""
    if x is None:
        return "n/a"
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)
