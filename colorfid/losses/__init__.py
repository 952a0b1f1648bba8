"""Colour-aware training losses: differentiable everywhere, balanced, BasicSR drop-ins.

Every loss is built on :mod:`colorfid.color`, :mod:`colorfid.difference` and
:mod:`colorfid.metrics` (CIELAB, YCbCr, chroma, CIEDE2000, SSIM and the high-chroma mask come
from there). They are ``nn.Module`` s with BasicSR's calling convention, each with a functional
form beside it::

    loss = ColorAwareLoss(loss_weight=1.0, reduction="mean")
    value = loss(pred, target, weight=None)      # pred, target: (N, 3, H, W) sRGB in [0, 1]

* ``loss_weight`` multiplies the result; ``reduction`` is ``"mean"`` (default), ``"sum"`` or
  ``"none"``; ``weight`` is BasicSR's optional element-wise weight, shaped ``(N, 1, H, W)``,
  ``(N, 3, H, W)`` (averaged over channels: every colour term is per pixel) or ``(N, H, W)``;
  with it ``"mean"`` is ``sum(loss * weight) / sum(weight)``.
* Predictions are network outputs: not range-checked or clamped (the sRGB and CIELAB curves
  extend naturally, with finite gradients).
* float16 / bfloat16 inputs and calls under ``torch.autocast`` are computed in float32 with
  autocast disabled inside the loss; float64 stays float64. No Python branch looks at a tensor
  value, so the graph is the same for every input.
* Near neutral colours, where the chroma |(a, b)| has no gradient, predicted chroma is compared
  through :func:`chroma_toward` (a grey prediction is pushed toward the target's hue).

Rooms: :mod:`~colorfid.losses.color_aware` (:class:`ColorAwareLoss`),
:mod:`~colorfid.losses.colorization` (Lab, saturation, confidence, hue and colour diversity),
:mod:`~colorfid.losses.pixel` (BasicSR's L1, MSE, Charbonnier, PSNR),
:mod:`~colorfid.losses.schedule` (:class:`LossWeightSchedule`),
:mod:`~colorfid.losses.basicsr` (:func:`register_basicsr`).
"""

from __future__ import annotations

from ..metrics import MS_SSIM_WEIGHTS, ms_ssim
from ._common import chroma_toward, hue_term
from .basicsr import BASICSR_LOSSES, register_basicsr
from .color_aware import ColorAwareLoss, color_aware_loss
from .colorization import (
    ColorDiversityLoss, ConfidenceLoss, HueDiversityLoss, LabLoss, SaturationLoss, color_diversity_loss,
    confidence_loss, hue_diversity_loss, lab_loss, saturation_loss,
)
from .pixel import PIXEL_LOSSES, CharbonnierLoss, L1Loss, MSELoss, PSNRLoss
from .schedule import RECONSTRUCTION_TERMS, LossWeightSchedule, ScheduleStage

__all__ = [
    "ColorAwareLoss",
    "LabLoss",
    "SaturationLoss",
    "HueDiversityLoss",
    "ConfidenceLoss",
    "ColorDiversityLoss",
    "color_aware_loss",
    "lab_loss",
    "saturation_loss",
    "confidence_loss",
    "hue_diversity_loss",
    "color_diversity_loss",
    "L1Loss",
    "MSELoss",
    "CharbonnierLoss",
    "PSNRLoss",
    "PIXEL_LOSSES",
    "LossWeightSchedule",
    "ScheduleStage",
    "BASICSR_LOSSES",
    "RECONSTRUCTION_TERMS",
    "register_basicsr",
    "chroma_toward",
    "hue_term",
    "ms_ssim",
    "MS_SSIM_WEIGHTS",
]
