"""BasicSR / NAFNet's plain pixel losses (L1, MSE, Charbonnier, PSNR), for the trainer's
``*_opt`` sections; the colour losses are in :mod:`colorfid.losses`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .._tensors import check_reduction
from ..color import srgb_to_ycbcr
from ..errors import ConfigError

__all__ = ["L1Loss", "MSELoss", "CharbonnierLoss", "PSNRLoss", "PIXEL_LOSSES"]


class _BasicLoss(nn.Module):
    """BasicSR's element-wise losses: ``loss_weight`` times the reduced map; with ``weight``,
    ``"mean"`` is ``sum(map * weight) / sum(weight)``."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction, type(self).__name__)

    def _reduce(self, m: Tensor, weight: Tensor | None) -> Tensor:
        if weight is not None:
            m = m * weight
            if self.reduction == "mean":
                return m.sum() / weight.expand_as(m).sum().clamp_min(1e-12)
        if self.reduction == "mean":
            return m.mean()
        if self.reduction == "sum":
            return m.sum()
        return m


class L1Loss(_BasicLoss):
    """BasicSR ``L1Loss``: ``loss_weight * mean(|pred - target|)``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Tensor:
        return self.loss_weight * self._reduce((pred - target).abs(), weight)


class MSELoss(_BasicLoss):
    """BasicSR ``MSELoss``: ``loss_weight * mean((pred - target)^2)``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Tensor:
        return self.loss_weight * self._reduce((pred - target) ** 2, weight)


class CharbonnierLoss(_BasicLoss):
    """BasicSR ``CharbonnierLoss``: ``loss_weight * mean(sqrt((pred - target)^2 + eps))``, eps 1e-12
    (P. Charbonnier et al., "Two deterministic half-quadratic regularization algorithms", ICIP 1994)."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-12) -> None:
        super().__init__(loss_weight, reduction)
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Tensor:
        return self.loss_weight * self._reduce(torch.sqrt((pred - target) ** 2 + self.eps), weight)


class PSNRLoss(nn.Module):
    """NAFNet's ``PSNRLoss``: ``loss_weight * 10/ln(10) * mean_n log(MSE_n + 1e-8)`` = -PSNR(dB) (+const).

    ``toY=True`` compares BT.601 luma (``colorfid.color.srgb_to_ycbcr(y_only=True)``, studio
    range, as NAFNet's coefficients 65.481/128.553/24.966 + 16). Only ``reduction="mean"``.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", toY: bool = False) -> None:
        super().__init__()
        if reduction != "mean":
            raise ConfigError(f"PSNRLoss: reduction must be 'mean' (as NAFNet's), got {reduction!r}")
        self.loss_weight = float(loss_weight)
        self.scale = 10.0 / math.log(10.0)
        self.toY = bool(toY)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Tensor:
        if weight is not None:
            raise ConfigError("PSNRLoss: an element-wise weight is not supported")
        if self.toY:
            pred = srgb_to_ycbcr(pred, y_only=True, check=False)
            target = srgb_to_ycbcr(target, y_only=True, check=False)
        mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
        return self.loss_weight * self.scale * torch.log(mse + 1e-8).mean()


#: BasicSR / NAFNet pixel losses by name (their ``*_opt.type``), besides the colour losses.
PIXEL_LOSSES: dict[str, type[nn.Module]] = {
    "L1Loss": L1Loss, "MSELoss": MSELoss, "CharbonnierLoss": CharbonnierLoss, "PSNRLoss": PSNRLoss,
}
