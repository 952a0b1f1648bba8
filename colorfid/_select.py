"""Branch-free selection for per-pixel formulas: ``torch.where`` written so eager CPU code stays fast.

On CPU, comparisons to bool, ``torch.where``, ``masked_fill`` and bool -> float casts run as
scalar loops (``python bench/bench_color.py --ops``), so eager formulas select with float 0/1
*selectors* and :func:`where` picks between two finite branches with them (a lerp by exactly 0
or 1: bit for bit the chosen operand). Inside ``torch.compile`` / ``torch.export`` a selection is
a plain ``torch.where``, which the compilers vectorise. The formulas in :mod:`colorfid.color`,
:mod:`colorfid.difference` and :mod:`colorfid.metrics` read ``where(above(x, t), a, b)`` for
``torch.where(x > t, a, b)``.

Two kinds of selector, by use:

* *weights* -- :func:`above`, :func:`below`, :func:`nonzero`: float 0/1 always (also when
  traced), so they may enter arithmetic (products, sums, counts);
* *masks* -- :func:`gt`, :func:`lt`, :func:`ne0`: float 0/1 eager, bool when traced; combined
  with :func:`not_`, :func:`and_`, :func:`or_` and consumed by :func:`where`, :func:`safe`,
  :func:`zero_unless` and :func:`plus_minus` only.

None of them carries a gradient; as with ``torch.where``, the branch not taken must be finite
(guard its input), since its gradient is multiplied by 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "is_compiling", "above", "below", "nonzero", "gt", "lt", "ne0", "not_", "and_", "or_", "where", "safe",
    "zero_unless", "plus_minus",
]

#: torch.compiler.is_compiling exists from torch 2.3 (pyproject allows 2.2: then always eager).
is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", lambda: False)


def above(x: Tensor, threshold: float = 0.0) -> Tensor:
    """Weight 1 where ``x > threshold``, 0 where ``x <= threshold`` or x is NaN.

    ``x - t`` is 0 only when ``x == t`` (IEEE subtraction is exact in sign, gradual underflow),
    so the test is exact."""
    return (x.detach() - threshold).sign_().clamp_min_(0.0)


def below(x: Tensor, threshold: float = 0.0) -> Tensor:
    """Weight 1 where ``x < threshold``, 0 elsewhere (NaN included)."""
    return (threshold - x.detach()).sign_().clamp_min_(0.0)


def nonzero(x: Tensor) -> Tensor:
    """Weight 1 where ``x != 0``, 0 where x is 0 (either sign) or NaN."""
    return x.detach().abs().sign_()


def gt(x: Tensor, t: float = 0.0) -> Tensor:
    """Mask ``x > t``."""
    return x > t if is_compiling() else above(x, t)


def lt(x: Tensor, t: float = 0.0) -> Tensor:
    """Mask ``x < t``."""
    return x < t if is_compiling() else below(x, t)


def ne0(x: Tensor) -> Tensor:
    """Mask ``x != 0``."""
    return x != 0 if is_compiling() else nonzero(x)


def not_(m: Tensor) -> Tensor:
    return ~m if m.dtype == torch.bool else 1.0 - m


def and_(m: Tensor, n: Tensor) -> Tensor:
    return m & n if m.dtype == torch.bool else m * n


def or_(m: Tensor, n: Tensor) -> Tensor:
    """m or n, for masks that are never both true."""
    return m | n if m.dtype == torch.bool else m + n


def where(w: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where the selector ``w`` is true (1), ``b`` where it is false (0).

    Eager, float: ``torch.lerp(b, a, w)``, exact when ``a`` and ``b`` are finite (a non-finite
    operand yields NaN: use it on finite branches only); the gradient reaches ``a`` times w and
    ``b`` times 1 - w. Traced: ``torch.where(w > 0.5, a, b)`` (same values). Bool: ``torch.where``.
    """
    if w.dtype == torch.bool:
        return torch.where(w, a, b)
    if is_compiling():
        return torch.where(w > 0.5, a, b)
    return torch.lerp(b, a, w)


def safe(m: Tensor, x: Tensor) -> Tensor:
    """x where m, else 1: a divisor or square-root argument that is finite on the branch not taken."""
    return where(m, x, torch.ones_like(x))


def zero_unless(m: Tensor, x: Tensor) -> Tensor:
    """x where m, else 0."""
    return torch.where(m, x, 0.0) if m.dtype == torch.bool else x * m


def plus_minus(m: Tensor, like: Tensor) -> Tensor:
    """+1 where m, -1 elsewhere."""
    if m.dtype == torch.bool:
        return torch.where(m, 1.0, -1.0).to(like.dtype)
    return 2.0 * m - 1.0
