"""Number formatting for people: the gate's tables, the report's cells, log lines and the demo
table each have one rule, all kept here; and the "did you mean" hint of unknown names."""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

__all__ = ["did_you_mean", "finite", "sig", "fixed", "short", "table"]


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
    """Gate tables: 4 significant digits (3 beyond [0.001, 1000)); "-" for None."""
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


def fixed(v: Any, signed: bool = False) -> str:
    """Report cells: 3 decimals under 10, 2 under 100, 1 above; "—" for null/NaN, "∞" for inf;
    a typographic minus."""
    f = finite(v)
    if f is None:
        if isinstance(v, float) and math.isinf(v):
            return ("+" if signed and v > 0 else "") + ("∞" if v > 0 else "−∞")
        return "—"
    a = abs(f)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        s = f"{f:+.2e}" if signed else f"{f:.2e}"
    else:
        digits = 1 if a >= 100 else 2 if a >= 10 else 3
        s = f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"
    return s.replace("-", "−")


def short(x: Any) -> str:
    """Log lines: 4 significant digits of anything ``float()`` takes (a 0-d tensor too); "n/a"
    for None."""
    if x is None:
        return "n/a"
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)


def table(value: float | None) -> str:
    """The demo's table: 3 decimals under 10, else 2; "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
