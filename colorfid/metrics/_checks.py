"""Argument checks of the metrics: images, masks, pairs, and how a bad prediction is sanitised."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._tensors import REDUCED, channel_dim, check_float
from ..color import check_srgb
from ..errors import DTypeError, RangeError, ShapeError

__all__ = [
    "acc_dtype", "check_image", "one_image", "same_shape", "check_mask", "clamped_srgb", "pair_one", "pair_batched",
    "bad_value_counts", "sanitize",
]


def acc_dtype(device: torch.device) -> torch.dtype:
    """Accumulation precision: float64, float32 on devices without it (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_image(x: Tensor, name: str) -> Tensor:
    """Validate dtype and channel dim (not the range) of an image ``(..., 3, H, W)``."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ShapeError(f"{name}: expected an image (..., 3, H, W), got shape {tuple(x.shape)}")
    channel_dim(x, -3, name)
    check_float(x, name)
    return x


def one_image(x: Tensor, name: str) -> Tensor:
    """Accept (3, H, W) or (1, 3, H, W); return (3, H, W)."""
    check_image(x, name)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ShapeError(
            f"{name}: this statistic describes one image (3, H, W) or (1, 3, H, W), got shape "
            f"{tuple(x.shape)}; loop over the batch, e.g. [f(p, t) for p, t in zip(pred, target)]"
        )
    return x


def same_shape(pred: Tensor, target: Tensor, func: str) -> None:
    if pred.shape != target.shape:
        raise ShapeError(f"{func}: pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")


def check_mask(mask: Tensor | None, shape: Sequence[int], func: str) -> Tensor | None:
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


def clamped_srgb(x: Tensor, name: str) -> Tensor:
    """check_srgb (range, finite), then clamp the tolerated excursions of [-tol, 1 + tol]."""
    x = check_srgb(x, name=name)
    return x.clamp(0.0, 1.0)


def pair_one(pred: Tensor, target: Tensor, func: str) -> tuple[Tensor, Tensor]:
    pred = one_image(pred, f"{func}: pred")
    target = one_image(target, f"{func}: target")
    same_shape(pred, target, func)
    pred = clamped_srgb(pred, f"{func}: pred")
    target = clamped_srgb(target, f"{func}: target")
    return pred, target


def pair_batched(pred: Tensor, target: Tensor, func: str) -> tuple[Tensor, Tensor, torch.dtype]:
    check_image(pred, f"{func}: pred")
    check_image(target, f"{func}: target")
    same_shape(pred, target, func)
    dtype = torch.promote_types(pred.dtype, target.dtype)
    work = torch.float32 if dtype in REDUCED else dtype
    return pred.to(work), target.to(work), dtype


def bad_value_counts(x: Tensor) -> tuple[int, int]:
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


def sanitize(x: Tensor) -> Tensor:
    """NaN -> 0, -Inf -> 0, +Inf -> 1, then clamp to [0, 1] (how image_metrics treats a bad prediction)."""
    return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)

