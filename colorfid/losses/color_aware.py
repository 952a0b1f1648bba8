"""The composite colour-aware pixel loss (:class:`ColorAwareLoss`) and its functional form."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .._tensors import reduce
from ..color import safe_hypot, srgb_to_lab
from ..difference import delta_e_2000
from ..errors import UnknownNameError
from ..metrics import MetricProtocol, high_chroma_mask, ms_ssim, ssim_map
from ..metrics.structural import WIN_SIZE
from ._common import (
    KAPPA, TAU, ColorLoss, check_nonneg, check_pair, check_space, chroma_toward, full_precision, hue_term,
    image_means, opponent, pixel_weight, unit_direction, weighted_mean,
)

__all__ = ["ColorAwareLoss", "color_aware_loss"]


class ColorAwareLoss(ColorLoss):
    r"""Composite colour-aware pixel loss for restoration / enhancement (BasicSR ``pixel_opt``).

    L = loss_weight (w_l1 L1 + w_C |C_p - C_t| + w_h H + w_d D + w_ΔE ΔE00 + w_s (1 - SSIM)), each
    term a mean over pixels under the pixel weights: 1 + ``high_chroma_weight`` on the target's
    high-chroma pixels (:func:`~colorfid.metrics.high_chroma_mask` with ``high_chroma_space`` and
    ``protocol``), 1 elsewhere, times BasicSR's ``weight``.

    * ``l1``: mean |sRGB error| over the channels, in [0, 1].
    * ``chroma``: |C_p - C_t|, C = |(Cb, Cr)| (``space="ycbcr"``, BT.601; pure blue 0.445) or
      C*ab / 100 (``"lab"``; pure blue 1.34); :func:`chroma_toward` near grey.
    * ``hue``: :func:`hue_term`, w_t 2 C_t |sin(Δh/2)|, w_t = C_t / (C_t + 10 C*); scales with
      the target's chroma, so desaturating never lowers it. Units of ``chroma``.
    * ``deficit``: D = relu(C_t - C_p) on high-chroma target pixels only. Units of ``chroma``.
    * ``delta_e``: CIEDE2000 (CIE 142-2001; Sharma, Wu & Dalal 2005), ΔE00 units (0 to ~100).
    * ``ssim``: 1 - SSIM (Wang et al. 2004) of :func:`~colorfid.metrics.ssim_map`, its window
      centres weighted (H, W >= 11); or 1 - MS-SSIM with ``ssim_kind="ms_ssim"`` (H, W >= 161).

    Default weights (:attr:`DEFAULT_WEIGHTS`, ycbcr / lab): l1 1, chroma 2 / 1, hue 5 / 2,
    delta_e 0.01, ssim 1, deficit 0 -- balanced terms by :func:`colorfid.testing.loss_balance`.
    ``*_weight=None`` takes the default, 0 skips the term.

    ``reduction``: ``"mean"`` (weighted mean over the batch's pixels), ``"sum"`` or ``"none"``
    (one value per image, shape (N,)). ``return_components=True`` returns ``(loss, components)``;
    :attr:`components` holds the last call's raw terms as floats either way.
    """

    TERMS: tuple[str, ...] = ("l1", "chroma", "hue", "delta_e", "ssim", "deficit")
    DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
        "ycbcr": {"l1": 1.0, "chroma": 2.0, "hue": 5.0, "delta_e": 0.01, "ssim": 1.0, "deficit": 0.0},
        "lab": {"l1": 1.0, "chroma": 1.0, "hue": 2.0, "delta_e": 0.01, "ssim": 1.0, "deficit": 0.0},
    }

    def __init__(
        self,
        space: Literal["ycbcr", "lab"] = "ycbcr",
        *,
        l1_weight: float | None = None,
        chroma_weight: float | None = None,
        hue_weight: float | None = None,
        delta_e_weight: float | None = None,
        ssim_weight: float | None = None,
        deficit_weight: float | None = None,
        ssim_kind: Literal["ssim", "ms_ssim"] = "ssim",
        high_chroma_weight: float = 3.0,
        high_chroma_space: Literal["hsv", "lab"] = "hsv",
        protocol: MetricProtocol | Mapping[str, Any] | None = None,
        loss_weight: float = 1.0,
        reduction: str = "mean",
        return_components: bool = False,
    ) -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        owner = "ColorAwareLoss"
        self.space = check_space(space, owner)
        if ssim_kind not in ("ssim", "ms_ssim"):
            raise UnknownNameError(f"{owner}: unknown ssim_kind {ssim_kind!r}; known: ['ssim', 'ms_ssim']")
        self.ssim_kind = ssim_kind
        self.high_chroma_weight = check_nonneg(high_chroma_weight, "high_chroma_weight", owner)
        self.high_chroma_space = check_space(high_chroma_space, owner + " (high_chroma_space)", ("hsv", "lab"))
        self.protocol = MetricProtocol.from_dict(protocol) if isinstance(protocol, Mapping) else protocol
        self.return_components = bool(return_components)
        given = {"l1": l1_weight, "chroma": chroma_weight, "hue": hue_weight,
                 "delta_e": delta_e_weight, "ssim": ssim_weight, "deficit": deficit_weight}
        defaults = self.DEFAULT_WEIGHTS[self.space]
        self._weights: dict[str, float] = {
            k: defaults[k] if v is None else check_nonneg(v, f"{k}_weight", owner) for k, v in given.items()
        }
        self._last: dict[str, Tensor] = {}
        self._last_floats: dict[str, float] | None = None

    # -- weights ---------------------------------------------------------------------------
    @property
    def term_weights(self) -> dict[str, float]:
        """The current term weights (a copy); ``loss_weight`` multiplies them all."""
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Update some term weights, e.g. from ``LossWeightSchedule.weights(iteration)``.

        Unknown names raise :class:`~colorfid.errors.UnknownNameError` listing the known ones.
        """
        new = dict(self._weights)
        for k, v in weights.items():
            if k not in self.TERMS:
                raise UnknownNameError(f"ColorAwareLoss.set_weights: unknown term {k!r}; known: {list(self.TERMS)}")
            new[k] = check_nonneg(v, k, "ColorAwareLoss.set_weights")
        self._weights = new

    @property
    def components(self) -> dict[str, float]:
        """Raw (unweighted) term values of the last call, plus ``"total"``, as floats."""
        if self._last_floats is None:
            self._last_floats = {k: float(v) for k, v in self._last.items()}
        return dict(self._last_floats)

    def extra_repr(self) -> str:
        w = ", ".join(f"{k}={v:g}" for k, v in self._weights.items())
        return (f"space={self.space!r}, {w}, ssim_kind={self.ssim_kind!r}, "
                f"high_chroma_weight={self.high_chroma_weight:g}, {super().extra_repr()}")

    # -- computation -----------------------------------------------------------------------
    def _hc_mask(self, target: Tensor) -> Tensor:
        """High-chroma target pixels (1.0) and the rest (0.0), shaped (..., H, W)."""
        mask = high_chroma_mask(target.detach(), protocol=self.protocol, space=self.high_chroma_space)
        return mask.to(target.dtype)

    def _pixel_weights(self, target: Tensor, weight: Tensor | None, active: Sequence[str] = ()
                       ) -> tuple[Tensor | None, Tensor | None]:
        """(pixel weights, the high-chroma mask when a term needs it): the mask is made once."""
        w = pixel_weight(weight, target[..., 0, :, :], "ColorAwareLoss")
        mask = None
        if self.high_chroma_weight > 0 or "deficit" in active:
            mask = self._hc_mask(target)
        if self.high_chroma_weight > 0:
            hc = 1.0 + self.high_chroma_weight * mask
            w = hc if w is None else w * hc
        return w, mask

    def _terms(self, pred: Tensor, target: Tensor, active: Sequence[str], w: Tensor | None,
               per_image: bool, hc_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Raw term values: global (weighted) means, or per-image ones shaped (...) if ``per_image``."""
        red = _Reducer(w, per_image)
        out: dict[str, Tensor] = {}
        if "l1" in active:
            out["l1"] = red((pred - target).abs().mean(dim=-3), w)
        lab_p = lab_t = None
        if "delta_e" in active or (self.space == "lab" and any(k in active for k in ("chroma", "hue", "deficit"))):
            lab_p = srgb_to_lab(pred, check=False)
            lab_t = srgb_to_lab(target, check=False)
        if "chroma" in active or "hue" in active or "deficit" in active:
            if self.space == "lab":
                _, ap, bp = opponent(lab_p, "lab", is_lab=True)
                _, at, bt = opponent(lab_t, "lab", is_lab=True)
            else:
                _, ap, bp = opponent(pred, self.space)
                _, at, bt = opponent(target, self.space)
            ct = safe_hypot(at, bt)
            ua, ub = unit_direction(at, bt, ct)
            cp = None
            if "chroma" in active:
                cp = chroma_toward(ap, bp, ua, ub, TAU[self.space])
                out["chroma"] = red((cp - ct).abs(), w)
            if "hue" in active:
                out["hue"] = red(hue_term(ap, bp, ct, ua, ub, KAPPA[self.space], TAU[self.space]), w)
            if "deficit" in active:
                cp = chroma_toward(ap, bp, ua, ub, TAU[self.space]) if cp is None else cp
                mask = self._hc_mask(target) if hc_mask is None else hc_mask
                out["deficit"] = red(torch.relu(ct - cp) * mask, w)
        if "delta_e" in active:
            out["delta_e"] = red(delta_e_2000(lab_p, lab_t), w)
        if "ssim" in active:
            if self.ssim_kind == "ms_ssim":
                v = 1.0 - ms_ssim(pred, target)
                out["ssim"] = v if per_image else v.mean()
            else:
                # SSIM map of the valid region (metrics.ssim_map), averaged over channels, with
                # the pixel weights of the window centres: metrics.ssim's value when unweighted.
                m = 1.0 - ssim_map(pred, target, data_range=1.0).mean(dim=-3)
                r = WIN_SIZE // 2
                wc = None if w is None else w[..., r : w.shape[-2] - r, r : w.shape[-1] - r]
                out["ssim"] = red(m, wc)
        return out

    def _active(self) -> list[str]:
        return [k for k in self.TERMS if self._weights[k] > 0]

    def terms(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
        """Raw (unweighted) term values as scalar tensors with their graphs (mean reduction).

        Every term is computed, whatever its weight (for :func:`colorfid.testing.loss_balance`,
        which multiplies them by :attr:`term_weights` and ``loss_weight``).
        """
        pred, target = check_pair(pred, target, "ColorAwareLoss")
        with full_precision(pred.device):
            w, mask = self._pixel_weights(target, weight, self.TERMS)
            return self._terms(pred, target, self.TERMS, w, per_image=False, hc_mask=mask)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None,
                 return_components: bool | None = None) -> Any:
        active = self._active()
        w, mask = self._pixel_weights(target, weight, active)
        per_image = self.reduction != "mean"
        values = self._terms(pred, target, active, w, per_image, hc_mask=mask)
        total: Tensor | None = None
        for k, v in values.items():
            t = _scaled(self._weights[k], v)
            total = t if total is None else total + t
        if total is None:  # every weight is 0: a zero that still depends on pred
            total = (pred * 0.0).sum(dim=(-3, -2, -1)) if per_image else (pred * 0.0).sum()
        total = _scaled(self.loss_weight, total)
        if per_image:
            total = reduce(total, self.reduction)
        comps = {k: _mean(v.detach()) for k, v in values.items()}
        comps["total"] = _mean(total.detach()) if self.reduction != "sum" else total.detach()
        self._last = comps
        self._last_floats = None
        want = self.return_components if return_components is None else return_components
        return (total, dict(comps)) if want else total


class _Reducer:
    """``weighted_mean`` / ``image_means`` of the terms under one pixel weight ``w``, whose sum
    (the denominator) is taken once for all terms; the window-centre crop of the SSIM term, a
    different weight, goes through the plain functions."""

    def __init__(self, w: Tensor | None, per_image: bool) -> None:
        self.w, self.per_image = w, per_image
        self.den: Tensor | None = None
        if w is not None:
            tiny = torch.finfo(w.dtype).tiny
            self.den = (w.sum(dim=(-2, -1)) if per_image else w.sum()).clamp_min(tiny)

    def __call__(self, m: Tensor, w: Tensor | None) -> Tensor:
        if w is not self.w or w is None:
            return (image_means if self.per_image else weighted_mean)(m, w)
        return ((m * w).sum(dim=(-2, -1)) if self.per_image else (m * w).sum()) / self.den


def _scaled(weight: float, v: Tensor) -> Tensor:
    """``weight * v``; a weight of 1 multiplies nothing (x * 1 is x, in value and gradient)."""
    return v if weight == 1.0 else weight * v


def _mean(v: Tensor) -> Tensor:
    """``v.mean()``, without an operator for a scalar (its own mean)."""
    return v if v.dim() == 0 else v.mean()


def color_aware_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, **options: Any) -> Tensor:
    """Functional form of :class:`ColorAwareLoss`: ``ColorAwareLoss(**options)(pred, target, weight)``."""
    return ColorAwareLoss(**options)(pred, target, weight)
