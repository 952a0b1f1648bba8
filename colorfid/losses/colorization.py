"""Colourization losses on CIELAB (L*/100, a*/100, b*/100): against sepia / grey averaging.

:class:`LabLoss` (normalised Lab error), :class:`SaturationLoss` (|ΔC*|), :class:`ConfidenceLoss`
(one-sided chroma deficit), :class:`HueDiversityLoss` and :class:`ColorDiversityLoss` (hue
dispersion, Mardia & Jupp 2000), each with its functional form. Inputs are sRGB (default) or
CIELAB tensors (``input_space="lab"``); a grey prediction of a coloured target gets a gradient
toward the target's hue (:func:`~colorfid.losses.chroma_toward`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from .._tensors import reduce
from ..color import safe_hypot
from ..errors import ConfigError, UnknownNameError
from ._common import (
    PLANE_SCALE, TAU, ColorLoss, check_nonneg, check_space, chroma_toward, image_means, opponent, pixel_weight,
    reduce_pixels, unit_direction,
)

__all__ = [
    "LabLoss", "SaturationLoss", "ConfidenceLoss", "HueDiversityLoss", "ColorDiversityLoss", "lab_loss",
    "saturation_loss", "confidence_loss", "hue_diversity_loss", "color_diversity_loss",
]


class _LabFamily(ColorLoss):
    """Shared: inputs are sRGB (default) or CIELAB tensors (``input_space="lab"``)."""

    def __init__(self, *, input_space: Literal["srgb", "lab"] = "srgb", loss_weight: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        self.input_space = check_space(input_space, type(self).__name__ + " (input_space)", ("srgb", "lab"))

    def _planes(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L*/100, a*/100, b*/100)."""
        return opponent(x, "lab", is_lab=self.input_space == "lab")

    def _chroma_planes(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(a_pred, b_pred, C_pred with the grey-escape gradient, a_target, b_target, C_target), all /100."""
        _, ap, bp = self._planes(pred)
        _, at, bt = self._planes(target)
        ct = safe_hypot(at, bt)
        ua, ub = unit_direction(at, bt, ct)
        return ap, bp, chroma_toward(ap, bp, ua, ub, TAU["lab"]), at, bt, ct

    def _chroma_pair(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """(C_pred with the grey-escape gradient, C_target), both C*/100."""
        _, _, cp, _, _, ct = self._chroma_planes(pred, target)
        return cp, ct

    def extra_repr(self) -> str:
        return f"input_space={self.input_space!r}, {super().extra_repr()}"


class LabLoss(_LabFamily):
    """Normalised CIELAB loss: ``l_weight * |ΔL*| / 100 + ab_weight * (|Δa*| + |Δb*|) / (2 * 256)``.

    The normalisation of colourization practice: L/100 and (ab + 128)/256 both map to [0, 1] (the
    offset cancels in a difference). Each part is a mean absolute error in [0, 1]; typical
    restoration errors give 0.01-0.1, the same scale as RGB L1 — unlike an MSE on raw CIE units,
    which is 100-1000x larger than a perceptual term. ``criterion="mse"`` squares the normalised
    differences (scale 1e-4-1e-2). Defaults ``l_weight = ab_weight = 1``. ``reduction="none"``
    gives (N, 1, H, W). Lab conversion: ``colorfid.color.srgb_to_lab`` (D65, CIE 015:2018).
    """

    def __init__(self, l_weight: float = 1.0, ab_weight: float = 1.0, *,
                 criterion: Literal["l1", "mse"] = "l1", input_space: Literal["srgb", "lab"] = "srgb",
                 loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(input_space=input_space, loss_weight=loss_weight, reduction=reduction)
        self.l_weight = check_nonneg(l_weight, "l_weight", "LabLoss")
        self.ab_weight = check_nonneg(ab_weight, "ab_weight", "LabLoss")
        if criterion not in ("l1", "mse"):
            raise UnknownNameError(f"LabLoss: unknown criterion {criterion!r}; known: ['l1', 'mse']")
        self.criterion = criterion

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        lp, ap, bp = self._planes(pred)
        lt, at, bt = self._planes(target)
        # planes are /100; ab to the /256 normalisation.
        k = 100.0 / 256.0
        dl, da, db = lp - lt, (ap - at) * k, (bp - bt) * k
        f = (lambda d: d.abs()) if self.criterion == "l1" else (lambda d: d * d)
        m = self.l_weight * f(dl) + self.ab_weight * 0.5 * (f(da) + f(db))
        w = pixel_weight(weight, m, "LabLoss")
        return self.loss_weight * reduce_pixels(m, w, self.reduction)


class SaturationLoss(_LabFamily):
    """|C*_pred - C*_target| / 100 per pixel (CIELAB chroma, ``colorfid.color.chroma``).

    Penalises both washed-out and over-saturated predictions. Scale: 0 to ~1.3 (a pure blue vs
    grey); typical 0.02-0.1. Default weight 1. A grey prediction of a coloured target gets a
    gradient toward the target's hue (:func:`chroma_toward`). ``reduction="none"``: (N, 1, H, W).
    """

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        cp, ct = self._chroma_pair(pred, target)
        m = (cp - ct).abs()
        return self.loss_weight * reduce_pixels(m, pixel_weight(weight, m, "SaturationLoss"), self.reduction)


class ConfidenceLoss(_LabFamily):
    """relu(C*_target - C*_pred) / 100 per pixel: penalises "playing it safe" with grey.

    One-sided: only a chroma *deficit* costs (over-saturation is left to other terms), so a
    colourization model is pushed out of the sepia/grey average without being pulled toward
    any particular hue. Scale 0 to ~1.3; typical 0.01-0.1. Default weight 1 (0.1-0.5 next to a
    reconstruction loss). A grey prediction gets a gradient toward the target's hue.
    ``reduction="none"``: (N, 1, H, W).
    """

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        cp, ct = self._chroma_pair(pred, target)
        m = torch.relu(ct - cp)
        return self.loss_weight * reduce_pixels(m, pixel_weight(weight, m, "ConfidenceLoss"), self.reduction)


def _hue_dispersion(a: Tensor, b: Tensor, c: Tensor, kappa: float, w: Tensor | None) -> Tensor:
    """Chroma-weighted circular hue dispersion of each image, in [0, 1).

    With pixel weights v = C / (C + kappa) (0 at grey, -> 1 when saturated) and unit hue vectors
    u: D = mean(v) - |mean(v u)|, i.e. mean(v) times the circular variance 1 - R (Mardia & Jupp,
    *Directional Statistics*, 2000, §2.3.1) of the v-weighted hues. v u = (a, b) / (C + kappa)
    is smooth everywhere, so no 1/C appears. 0 for grey or single-hue images, -> 1 for
    saturated images whose hues cancel out.
    """
    den = c + kappa
    v, va, vb = c / den, a / den, b / den
    mv, ma, mb = image_means(v, w), image_means(va, w), image_means(vb, w)
    return mv - safe_hypot(ma, mb)


class HueDiversityLoss(_LabFamily):
    """|D_pred - D_target| per image, D the chroma-weighted circular hue variance (see below).

    ``D = mean(v) - |mean(v u)|`` over the image's pixels, v = C* / (C* + kappa) (kappa = 10 C*,
    so near-grey pixels, whose hue is noise, count little), u the unit (a*, b*) hue vector: the
    circular variance of hue (Mardia & Jupp 2000) scaled by mean colourfulness. Range [0, 1):
    0 for grey or single-hue images (the sepia/purple averaging failure), ~0.5-0.8 for
    multi-coloured scenes. Scale of the loss: 0-1, typical 0.02-0.3. Default weight 1.
    ``reduction="none"`` gives one value per image (N,); BasicSR's ``weight`` weights the pixels
    within each image.
    """

    def __init__(self, kappa: float = 10.0, *, input_space: Literal["srgb", "lab"] = "srgb",
                 loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(input_space=input_space, loss_weight=loss_weight, reduction=reduction)
        k = check_nonneg(kappa, "kappa", "HueDiversityLoss")
        if k == 0:
            raise ConfigError("HueDiversityLoss: kappa must be > 0 (C* units)")
        self.kappa = k

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        ap, bp, cp, at, bt, ct = self._chroma_planes(pred, target)
        w = pixel_weight(weight, ct, "HueDiversityLoss")
        k = self.kappa * PLANE_SCALE["lab"]
        dp = _hue_dispersion(ap, bp, cp, k, w)
        dt = _hue_dispersion(at, bt, ct, k, w)
        return self.loss_weight * reduce((dp - dt).abs(), self.reduction)


class ColorDiversityLoss(_LabFamily):
    """Smooth exponential penalties on low hue diversity and low saturation, per image.

    ``P(x) = div_weight * exp(-D(x) / div_tau) + sat_weight * exp(-S(x) / sat_tau)`` with D the
    hue dispersion of :class:`HueDiversityLoss` ([0, 1)) and S the mean C*/100 of the image.
    ``relative=True`` (default) penalises only what the prediction lacks relative to its target,
    term by term: ``relu(exp(-D_p/div_tau) - exp(-D_t/div_tau)) + ...``, so a genuinely grey
    target costs nothing; ``relative=False`` penalises the prediction alone (target ignored
    except for the direction of the grey-escape gradient). The exponentials replace the hard
    "if diversity < threshold" of ad-hoc diversity losses, which returns constants and stops
    gradients: this one is differentiable everywhere, with gradient largest exactly where the
    prediction is greyest. Scale: each term in [0, 1]; default weights 1, taus 0.1.
    ``reduction="none"``: (N,).
    """

    def __init__(self, div_weight: float = 1.0, sat_weight: float = 1.0, *, div_tau: float = 0.1,
                 sat_tau: float = 0.1, kappa: float = 10.0, relative: bool = True,
                 input_space: Literal["srgb", "lab"] = "srgb", loss_weight: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__(input_space=input_space, loss_weight=loss_weight, reduction=reduction)
        o = "ColorDiversityLoss"
        self.div_weight = check_nonneg(div_weight, "div_weight", o)
        self.sat_weight = check_nonneg(sat_weight, "sat_weight", o)
        self.div_tau = check_nonneg(div_tau, "div_tau", o)
        self.sat_tau = check_nonneg(sat_tau, "sat_tau", o)
        self.kappa = check_nonneg(kappa, "kappa", o)
        for n, v in (("div_tau", self.div_tau), ("sat_tau", self.sat_tau), ("kappa", self.kappa)):
            if v == 0:
                raise ConfigError(f"{o}: {n} must be > 0")
        self.relative = bool(relative)

    def _penalties(self, a: Tensor, b: Tensor, c: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        d = _hue_dispersion(a, b, c, self.kappa * PLANE_SCALE["lab"], w)
        s = image_means(c, w)
        return torch.exp(-d / self.div_tau), torch.exp(-s / self.sat_tau)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        ap, bp, cp, at, bt, ct = self._chroma_planes(pred, target)
        w = pixel_weight(weight, ct, "ColorDiversityLoss")
        pd, ps = self._penalties(ap, bp, cp, w)
        if self.relative:
            td, ts = self._penalties(at, bt, ct, w)
            pd, ps = torch.relu(pd - td), torch.relu(ps - ts)
        v = self.div_weight * pd + self.sat_weight * ps
        return self.loss_weight * reduce(v, self.reduction)


def lab_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`LabLoss`: ``LabLoss(**options)(pred, target, weight)``."""
    return LabLoss(**options)(pred, target, weight)


def saturation_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`SaturationLoss`."""
    return SaturationLoss(**options)(pred, target, weight)


def confidence_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`ConfidenceLoss`."""
    return ConfidenceLoss(**options)(pred, target, weight)


def hue_diversity_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`HueDiversityLoss`."""
    return HueDiversityLoss(**options)(pred, target, weight)


def color_diversity_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`ColorDiversityLoss`."""
    return ColorDiversityLoss(**options)(pred, target, weight)
