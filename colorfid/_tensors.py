"""Tensor argument checks and dtype handling shared by the numeric rooms (color, difference,
metrics, losses): the channel dimension, float-only inputs, reduced precisions, reductions."""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import DTypeError, ShapeError, UnknownNameError

__all__ = ["REDUCED", "REDUCTIONS", "channel_dim", "check_float", "finish", "check_reduction", "reduce"]

#: Precisions too short for colour maths: computed in float32, cast back.
REDUCED = (torch.float16, torch.bfloat16)
#: The ``reduction`` argument of metrics and losses.
REDUCTIONS = ("none", "mean", "sum")


def channel_dim(x: Tensor, dim: int, name: str) -> int:
    """The non-negative index of ``dim``, which must exist and hold 3 channels (else
    :class:`~colorfid.errors.ShapeError` naming ``name`` and the shape)."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ShapeError(
            f"{name}: channel dim {dim} does not exist in a tensor of shape {tuple(x.shape)}; "
            "expected (..., 3, H, W)"
        )
    d = dim % x.dim()
    if x.shape[d] != 3:
        raise ShapeError(
            f"{name}: expected 3 channels in dim {dim}, got shape {tuple(x.shape)} "
            f"({x.shape[d]} channels)"
        )
    return d


def check_float(x: Tensor, name: str) -> None:
    """:class:`~colorfid.errors.DTypeError` for integer or bool tensors (integer images go
    through :func:`colorfid.color.to_float`)."""
    if not x.is_floating_point():
        hint = (
            " Integer images go through colorfid.color.to_float(x), which scales by the dtype's maximum."
            if x.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64) or "uint" in str(x.dtype)
            else ""
        )
        raise DTypeError(f"{name}: expected a floating-point tensor, got {x.dtype}.{hint}")


def finish(y: Tensor, dtype: torch.dtype) -> Tensor:
    """``y`` cast back to the caller's ``dtype`` (a no-op when it already is)."""
    return y if y.dtype == dtype else y.to(dtype)


def check_reduction(reduction: str, owner: str) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else UnknownNameError naming ``owner``."""
    if reduction not in REDUCTIONS:
        raise UnknownNameError(f"{owner}: unknown reduction {reduction!r}; known: {list(REDUCTIONS)}")
    return reduction


def reduce(x: Tensor, reduction: str, owner: str = "reduce") -> Tensor:
    """``x`` as is (``"none"``), its mean or its sum."""
    check_reduction(reduction, owner)
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x
