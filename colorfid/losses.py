"""Colour-aware training losses: differentiable everywhere, balanced, BasicSR drop-ins.

Every loss here is built on :mod:`colorfid.color`, :mod:`colorfid.difference` and
:mod:`colorfid.metrics` (one implementation of each formula: CIELAB, YCbCr, chroma,
CIEDE2000, SSIM and the high-chroma mask come from there). They are ``nn.Module`` s with
BasicSR's calling convention::

    loss = ColorAwareLoss(loss_weight=1.0, reduction="mean")
    value = loss(pred, target, weight=None)      # pred, target: (N, 3, H, W) sRGB in [0, 1]

* ``loss_weight`` multiplies the result; ``reduction`` is ``"mean"`` (default), ``"sum"`` or
  ``"none"``; ``weight`` is BasicSR's optional element-wise weight, shaped ``(N, 1, H, W)``,
  ``(N, 3, H, W)`` (averaged over channels: every colour term is per pixel) or ``(N, H, W)``.
  With a weight, ``"mean"`` is ``sum(loss * weight) / sum(weight)`` as in BasicSR's
  ``weight_reduce_loss``.
* Predictions are network outputs: they are *not* range-checked or clamped (values slightly
  outside [0, 1] follow the sRGB and CIELAB curves' natural extensions, with finite gradients).
* Precision: float16/bfloat16 inputs, and calls under ``torch.autocast``, are computed in float32
  with autocast disabled inside the loss; the result is float32. float64 stays float64.
* No Python branch ever looks at a tensor value, so the graph is the same for every input.

Gradients at neutral colours
----------------------------
The chroma magnitude C = |(a, b)| has no gradient at a = b = 0: every hue direction is an equally
valid way out of grey (``colorfid.color.chroma`` returns gradient 0 there). A loss that compares a
grey prediction's chroma with a coloured target would therefore never move it, which is exactly
the "washed-out walls" failure. Wherever these losses compare predicted with target chroma they
use :func:`chroma_toward`: exactly C farther than 0.5 C* from neutral; closer, a smooth blend with
the chroma along the target's hue direction, so that an exactly grey prediction is pushed out of
grey toward the target's hue (the value differs from C by at most 0.15 C*).

Losses
------
* :class:`ColorAwareLoss` — the composite pixel loss for restoration/enhancement.
* :class:`LabLoss`, :class:`SaturationLoss`, :class:`HueDiversityLoss`,
  :class:`ConfidenceLoss`, :class:`ColorDiversityLoss` — the colourization family.
* :class:`LossWeightSchedule` — staged, linearly ramped term weights for a trainer.
* :func:`register_basicsr` — put every loss in BasicSR's ``LOSS_REGISTRY``.

NAFNet's fork of BasicSR has no registry: it looks ``pixel_opt.type`` up as an attribute of
``basicsr.models.losses``. Two lines at the end of ``basicsr/models/losses/__init__.py`` make
every colorfid loss visible there::

    from colorfid.losses import BASICSR_LOSSES
    globals().update(BASICSR_LOSSES)
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from .color import safe_hypot, srgb_to_lab, srgb_to_ycbcr
from .difference import delta_e_2000
from .errors import (
    ConfigError,
    DTypeError,
    MissingDependencyError,
    ShapeError,
    UnknownNameError,
    UsageError,
)
from .metrics import MetricProtocol, high_chroma_mask
from . import metrics as _metrics

__all__ = [
    "ColorAwareLoss",
    "LabLoss",
    "SaturationLoss",
    "HueDiversityLoss",
    "ConfidenceLoss",
    "ColorDiversityLoss",
    "LossWeightSchedule",
    "ScheduleStage",
    "BASICSR_LOSSES",
    "RECONSTRUCTION_TERMS",
    "register_basicsr",
    "chroma_toward",
    "ms_ssim",
    "MS_SSIM_WEIGHTS",
]

_REDUCTIONS = ("none", "mean", "sum")
_REDUCED = (torch.float16, torch.bfloat16)
_SPACES = ("ycbcr", "lab")
_NEUTRAL_CBCR = 128.0 / 255.0

#: Terms a schedule may not ramp to zero without ``allow_zero_reconstruction=True``.
RECONSTRUCTION_TERMS: tuple[str, ...] = ("l1", "ssim")

# Opponent-plane scale per space: Lab a*, b*, C* are divided by 100 (so a pure sRGB blue,
# C* = 134, is 1.34); YCbCr Cb/Cr are used as they are (centred, [0, 1] units: the same blue
# is |(Cb, Cr)| = 0.445). One C* unit is about 0.0033 YCbCr units.
_PLANE_SCALE = {"lab": 0.01, "ycbcr": 1.0}
# chroma_toward's neutral zone (about 0.5 C*) and the hue term's half-weight target chroma
# (10 C*, MetricProtocol.hue_chroma_floor) in each space's units.
_TAU = {"lab": 0.005, "ycbcr": 0.0017}
_KAPPA = {"lab": 0.10, "ycbcr": 0.033}


# ----------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------


def _check_reduction(reduction: str, owner: str) -> str:
    if reduction not in _REDUCTIONS:
        raise UnknownNameError(f"{owner}: unknown reduction {reduction!r}; known: {list(_REDUCTIONS)}")
    return reduction


def _check_space(space: str, owner: str, known: Sequence[str] = _SPACES) -> str:
    if space not in known:
        raise UnknownNameError(f"{owner}: unknown space {space!r}; known: {list(known)}")
    return space


def _check_nonneg(value: float, name: str, owner: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return v


def _check_pair(pred: Tensor, target: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    """Validate (N, 3, H, W)-like float tensors of one shape; upcast reduced precisions."""
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise DTypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DTypeError(
                f"{owner}: {name} must be a floating-point tensor (sRGB in [0, 1]), got {x.dtype}; "
                "integer images go through colorfid.color.to_float()"
            )
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ShapeError(f"{owner}: {name} must be shaped (..., 3, H, W), got {tuple(x.shape)}")
    if pred.shape != target.shape:
        raise ShapeError(f"{owner}: pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    if dtype in _REDUCED:
        dtype = torch.float32
    return pred.to(dtype), target.to(dtype)


def _pixel_weight(weight: Tensor | None, like: Tensor, owner: str) -> Tensor | None:
    """BasicSR's element-wise weight -> a per-pixel weight shaped like ``like`` (..., H, W)."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise DTypeError(f"{owner}: weight must be a tensor or None, got {type(weight).__name__}")
    w = weight.to(like.dtype)
    if w.dim() == like.dim() + 1:  # has a channel dim: (N, 1|3, H, W)
        if w.shape[-3] not in (1, 3):
            raise ShapeError(f"{owner}: weight must have 1 or 3 channels, got shape {tuple(weight.shape)}")
        w = w.mean(dim=-3)
    try:
        return torch.broadcast_to(w, like.shape)
    except RuntimeError:
        raise ShapeError(
            f"{owner}: weight of shape {tuple(weight.shape)} does not fit images of shape "
            f"{tuple(like.shape[:-2]) + (3,) + tuple(like.shape[-2:])}"
        ) from None


def _mean(m: Tensor, w: Tensor | None) -> Tensor:
    """Global (weighted) mean of a per-pixel map: sum(m w) / sum(w), as BasicSR."""
    if w is None:
        return m.mean()
    return (m * w).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def _image_means(m: Tensor, w: Tensor | None) -> Tensor:
    """Per-image (weighted) means of a (..., H, W) map -> (...)."""
    if w is None:
        return m.mean(dim=(-2, -1))
    return (m * w).sum(dim=(-2, -1)) / w.sum(dim=(-2, -1)).clamp_min(torch.finfo(w.dtype).tiny)


def _reduce_pixels(m: Tensor, w: Tensor | None, reduction: str) -> Tensor:
    """Reduce a per-pixel map (..., H, W); ``"none"`` gives (..., 1, H, W) (times the weight)."""
    if reduction == "mean":
        return _mean(m, w)
    mw = m if w is None else m * w
    if reduction == "sum":
        return mw.sum()
    return mw.unsqueeze(-3)


def _reduce_images(v: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    return v


@contextlib.contextmanager
def _full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast inside a loss (colour maths in float32/float64)."""
    if device.type in ("cpu", "cuda"):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - other backends
        yield


def _opponent(x: Tensor, space: str, *, is_lab: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(L or Y, a, b) planes of an sRGB image in the loss units of ``space``.

    ``lab``: L*/100, a*/100, b*/100 (``colorfid.color.srgb_to_lab``).
    ``ycbcr``: Y, Cb - 128/255, Cr - 128/255 (``colorfid.color.srgb_to_ycbcr``, BT.601).
    """
    if is_lab:
        lab = x
    elif space == "lab":
        lab = srgb_to_lab(x, check=False)
    else:
        ycc = srgb_to_ycbcr(x, check=False)
        y, cb, cr = ycc.unbind(-3)
        return y, cb - _NEUTRAL_CBCR, cr - _NEUTRAL_CBCR
    L, a, b = lab.unbind(-3)
    s = _PLANE_SCALE["lab"]
    return L * s, a * s, b * s


def _unit_direction(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) / c, and (0, 0) where c == 0; for targets (no gradient needed, but finite anyway)."""
    nz = c > 0
    cs = torch.where(nz, c, torch.ones_like(c))
    zero = torch.zeros_like(a)
    return torch.where(nz, a / cs, zero), torch.where(nz, b / cs, zero)


def hue_term(a: Tensor, b: Tensor, c_t: Tensor, ua: Tensor, ub: Tensor, kappa: float, tau: float) -> Tensor:
    """Chroma-neutral hue error ``w_t C_t (|v - u_t| + 1 - |v|)``, with ``v = (a, b) / D(C_p)``.

    ``u_t`` is the target's unit hue vector, ``w_t = C_t / (C_t + kappa)`` fades the term on
    near-grey targets, and ``D(C) = C`` for ``C >= s``, ``(C^2 + s^2) / (2 s)`` below
    (``s = max(C_t / 2, tau)``; C^1 at ``s``). For ``C_p >= s``, ``v`` is the prediction's unit
    hue vector and the value is ``w_t 2 C_t |sin(Δh / 2)|``: the hue angle alone decides it, so
    lowering the prediction's chroma never lowers it (a term proportional to C_p, such as the
    CIE ΔH, rewards desaturating whenever the hue is uncertain). Within ``s`` of grey, ``v``
    shrinks smoothly to 0 and ``1 - |v|`` grows to 1: a grey prediction costs ``2 w_t C_t``, as
    much as the opposite hue, and the value never increases with C_p at a fixed hue. Its
    gradient at grey points along the target hue, bounded by ``4 w_t C_t / s <= 8 w_t``.
    Units: those of a, b (C* / 100 in Lab, Cb/Cr in YCbCr).
    """
    c_p = safe_hypot(a, b)
    s = (0.5 * c_t).clamp_min(tau)
    d = torch.where(c_p >= s, c_p, (c_p * c_p + s * s) / (2.0 * s))
    wt = c_t / (c_t + kappa)
    return wt * c_t * (safe_hypot(a / d - ua, b / d - ub) + 1.0 - c_p / d)


def chroma_toward(a: Tensor, b: Tensor, ua: Tensor, ub: Tensor, tau: float) -> Tensor:
    """Chroma |(a, b)| that, near neutral, bends toward the chroma along the unit vector (ua, ub).

    ``C~ = C + g(C) * (a ua + b ub - C)`` with ``C = safe_hypot(a, b)`` (the chroma of
    :mod:`colorfid.color`) and ``g(C) = max(0, 1 - C / tau)^2``: exactly C for C >= tau, and within
    tau of neutral a smooth blend with the projection of (a, b) on the target's hue direction.
    At C = 0 the gradient is exactly (ua, ub), where |(a, b)| has none (every hue is an equally
    valid way out of grey). It is a genuine function (C^1 in C; gradients are its derivatives,
    so finite-difference checks hold) and differs from C by at most ``0.3 tau`` (with the hue
    opposite to the target). ``tau`` is in the units of a and b (0.5 C* in the losses here).
    """
    c = safe_hypot(a, b)
    g = (1.0 - c / tau).clamp_min(0.0) ** 2
    return c + g * (a * ua + b * ub - c)


class _ColorLoss(nn.Module):
    """Base: BasicSR's ``loss_weight`` / ``reduction`` / ``weight`` contract."""

    def __init__(self, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        name = type(self).__name__
        self.loss_weight = _check_nonneg(loss_weight, "loss_weight", name)
        self.reduction = _check_reduction(reduction, name)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Any:
        owner = type(self).__name__
        pred, target = _check_pair(pred, target, owner)
        with _full_precision(pred.device):
            return self._forward(pred, target, weight, **kwargs)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"


# ----------------------------------------------------------------------------------------------
# ColorAwareLoss
# ----------------------------------------------------------------------------------------------


class ColorAwareLoss(_ColorLoss):
    r"""Composite colour-aware pixel loss for restoration / enhancement (BasicSR ``pixel_opt``).

    .. math::

        \mathcal{L} = \text{loss\_weight}\,\big(w_{l1} L_1 + w_C\,\overline{|C_p - C_t|}
            + w_h\,\overline{H} + w_{\Delta E}\,\overline{\Delta E_{00}}
            + w_s\,(1 - \mathrm{SSIM})\big)

    Terms (per-pixel maps averaged with the pixel weights below):

    ``l1``
        Mean absolute sRGB error over the three channels, in [0, 1].
    ``chroma``
        |C_pred - C_target|: in ``space="ycbcr"`` C = |(Cb, Cr)| of BT.601 studio-range YCbCr
        (``colorfid.color.srgb_to_ycbcr``, Cb/Cr centred on 128/255, [0, 1] units, pure sRGB
        blue = 0.445); in ``space="lab"`` C = C*ab / 100 (pure blue = 1.34). A grey prediction
        of a coloured target gets a gradient toward the target's hue (:func:`chroma_toward`).
    ``hue``
        Chroma-neutral hue difference :func:`hue_term`: ``w_t 2 C_t |sin(Δh/2)|`` (u_t the target's
        unit hue vector, ``w_t = C_t / (C_t + kappa)``, kappa = 10 C*, the hue floor of
        :class:`~colorfid.metrics.MetricProtocol`). It scales with the *target's* chroma, so a
        prediction cannot lower it by desaturating when its hue is uncertain (the CIE ΔH, which
        scales with the prediction's chroma, can; see :func:`colorfid.testing.hue_uncertainty_probe`).
        A grey prediction costs ``2 w_t C_t`` and is pushed out of grey along the target hue;
        gradients are bounded. Same units as ``chroma``.
    ``deficit``
        One-sided chroma deficit ``relu(C_t - C_p)`` on high-chroma target pixels only (the mask
        below): the "confidence" idea of colourization, restricted to the surfaces that wash out,
        so neutral pixels are never pushed to invent colour. Off by default (weight 0). Same units
        as ``chroma``.
    ``delta_e``
        Mean CIEDE2000 (``colorfid.difference.delta_e_2000``, CIE 142-2001 / Sharma 2005) between
        the CIELAB conversions; ΔE units (0 to ~100; just-noticeable ~1-2).
    ``ssim``
        1 - SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5, K = (0.01, 0.03)): the map of
        :func:`colorfid.metrics.ssim_map` averaged over channels and window centres, i.e.
        :func:`colorfid.metrics.ssim` when unweighted (needs H, W >= 11). Or 1 - MS-SSIM with
        ``ssim_kind="ms_ssim"`` (:func:`ms_ssim`, needs H, W >= 161).

    High-chroma emphasis: pixels whose *target* is strongly saturated
    (:func:`colorfid.metrics.high_chroma_mask` with ``protocol``; HSV S >= 0.5 by default) get
    pixel weight ``1 + high_chroma_weight`` (others 1) in every per-pixel term. The weighted mean
    divides by the sum of pixel weights, so the loss scale does not depend on how many such
    pixels an image has; saturated minorities simply count more. ``high_chroma_weight=0`` turns
    it off. For SSIM the weights of the window-centre pixels weight the SSIM map; MS-SSIM (a
    product over scales) takes no pixel weights.

    Default weights (per ``space``): l1 1, chroma 2 / 1, hue 5 / 2, delta_e 0.01, ssim 1,
    deficit 0 (ycbcr / lab). They put every active term within a factor ~5 of the others, and
    each term's share of the gradient norm between ~7 and ~40 %, on
    ``colorfid.testing.synthetic_pairs`` at the start of a fine-tune and half-way through
    (``loss_balance`` reports both as balanced; the README prints the table).

    Parameters
    ----------
    space:
        ``"ycbcr"`` (default; BasicSR's colour space) or ``"lab"`` for the chroma and hue terms.
    l1_weight, chroma_weight, hue_weight, delta_e_weight, ssim_weight, deficit_weight:
        Term weights; ``None`` takes the default for ``space``; 0 disables a term (it is not
        computed).
    ssim_kind:
        ``"ssim"`` or ``"ms_ssim"`` (5 scales, Wang et al. 2003; needs images >= 161 px).
    high_chroma_weight:
        Extra weight of high-chroma target pixels (>= 0).
    high_chroma_space, protocol:
        Passed to :func:`colorfid.metrics.high_chroma_mask` (``"hsv"`` or ``"lab"``); ``protocol``
        is a :class:`~colorfid.metrics.MetricProtocol` or a mapping of its fields (YAML).
    loss_weight, reduction:
        BasicSR's. ``reduction="none"`` returns one value per image, shape (N,) (the
        composite contains a windowed term, so there is no per-pixel total); ``"sum"`` their sum;
        ``"mean"`` the (weighted) mean over all pixels of the batch.
    return_components:
        If true, ``forward`` returns ``(loss, components)`` with the detached raw term values
        (tensors); otherwise just the loss. Either way :attr:`components` holds the last call's
        values as floats.
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
        self.space = _check_space(space, owner)
        if ssim_kind not in ("ssim", "ms_ssim"):
            raise UnknownNameError(f"{owner}: unknown ssim_kind {ssim_kind!r}; known: ['ssim', 'ms_ssim']")
        self.ssim_kind = ssim_kind
        self.high_chroma_weight = _check_nonneg(high_chroma_weight, "high_chroma_weight", owner)
        self.high_chroma_space = _check_space(high_chroma_space, owner + " (high_chroma_space)", ("hsv", "lab"))
        self.protocol = MetricProtocol.from_dict(protocol) if isinstance(protocol, Mapping) else protocol
        self.return_components = bool(return_components)
        given = {"l1": l1_weight, "chroma": chroma_weight, "hue": hue_weight,
                 "delta_e": delta_e_weight, "ssim": ssim_weight, "deficit": deficit_weight}
        defaults = self.DEFAULT_WEIGHTS[self.space]
        self._weights: dict[str, float] = {
            k: defaults[k] if v is None else _check_nonneg(v, f"{k}_weight", owner) for k, v in given.items()
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
            new[k] = _check_nonneg(v, k, "ColorAwareLoss.set_weights")
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

    def _pixel_weights(self, target: Tensor, weight: Tensor | None) -> Tensor | None:
        w = _pixel_weight(weight, target[..., 0, :, :], "ColorAwareLoss")
        if self.high_chroma_weight > 0:
            hc = 1.0 + self.high_chroma_weight * self._hc_mask(target)
            w = hc if w is None else w * hc
        return w

    def _terms(self, pred: Tensor, target: Tensor, active: Sequence[str], w: Tensor | None,
               per_image: bool) -> dict[str, Tensor]:
        """Raw term values: global (weighted) means, or per-image ones shaped (...) if ``per_image``."""
        red = _image_means if per_image else _mean
        out: dict[str, Tensor] = {}
        if "l1" in active:
            out["l1"] = red((pred - target).abs().mean(dim=-3), w)
        lab_p = lab_t = None
        if "delta_e" in active or (self.space == "lab" and any(k in active for k in ("chroma", "hue", "deficit"))):
            lab_p = srgb_to_lab(pred, check=False)
            lab_t = srgb_to_lab(target, check=False)
        if "chroma" in active or "hue" in active or "deficit" in active:
            if self.space == "lab":
                _, ap, bp = _opponent(lab_p, "lab", is_lab=True)
                _, at, bt = _opponent(lab_t, "lab", is_lab=True)
            else:
                _, ap, bp = _opponent(pred, self.space)
                _, at, bt = _opponent(target, self.space)
            ct = safe_hypot(at, bt)
            ua, ub = _unit_direction(at, bt, ct)
            cp = None
            if "chroma" in active:
                cp = chroma_toward(ap, bp, ua, ub, _TAU[self.space])
                out["chroma"] = red((cp - ct).abs(), w)
            if "hue" in active:
                out["hue"] = red(hue_term(ap, bp, ct, ua, ub, _KAPPA[self.space], _TAU[self.space]), w)
            if "deficit" in active:
                cp = chroma_toward(ap, bp, ua, ub, _TAU[self.space]) if cp is None else cp
                out["deficit"] = red(torch.relu(ct - cp) * self._hc_mask(target), w)
        if "delta_e" in active:
            out["delta_e"] = red(delta_e_2000(lab_p, lab_t), w)
        if "ssim" in active:
            if self.ssim_kind == "ms_ssim":
                v = 1.0 - ms_ssim(pred, target)
                out["ssim"] = v if per_image else v.mean()
            else:
                # SSIM map of the valid region (metrics.ssim_map), averaged over channels, with
                # the pixel weights of the window centres: metrics.ssim's value when unweighted.
                m = 1.0 - _metrics.ssim_map(pred, target, data_range=1.0).mean(dim=-3)
                r = _SSIM_WIN // 2
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
        pred, target = _check_pair(pred, target, "ColorAwareLoss")
        with _full_precision(pred.device):
            w = self._pixel_weights(target, weight)
            return self._terms(pred, target, self.TERMS, w, per_image=False)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None,
                 return_components: bool | None = None) -> Any:
        w = self._pixel_weights(target, weight)
        per_image = self.reduction != "mean"
        values = self._terms(pred, target, self._active(), w, per_image)
        total: Tensor | None = None
        for k, v in values.items():
            t = self._weights[k] * v
            total = t if total is None else total + t
        if total is None:  # every weight is 0: a zero that still depends on pred
            total = (pred * 0.0).sum(dim=(-3, -2, -1)) if per_image else (pred * 0.0).sum()
        total = self.loss_weight * total
        if per_image:
            total = _reduce_images(total, self.reduction)
        comps = {k: v.detach().mean() for k, v in values.items()}
        comps["total"] = total.detach().mean() if self.reduction != "sum" else total.detach()
        self._last = comps
        self._last_floats = None
        want = self.return_components if return_components is None else return_components
        return (total, dict(comps)) if want else total


_SSIM_WIN = 11
#: MS-SSIM scale weights (Wang, Simoncelli & Bovik 2003, Table / eq. 7).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_FLOOR = 1e-4


def ms_ssim(pred: Tensor, target: Tensor, *, data_range: float = 1.0,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> Tensor:
    """Multi-scale SSIM of each image (Wang, Simoncelli & Bovik, Asilomar 2003), shape (...).

    ``prod_j cs_j ** w_j`` over scales j = 1..M-1 times ``ssim_M ** w_M`` at the coarsest,
    per channel, averaged over the channels; between scales a 2x2 average pool (``ceil_mode``,
    so odd sizes keep their last row/column). SSIM comes from :func:`colorfid.metrics.ssim_map`
    (Gaussian window 11, sigma 1.5, K = (0.01, 0.03)); the contrast-structure factor cs is the
    same map with the luminance comparison neutralised (C1 -> 1e8, which makes
    (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) = 1 to within 1e-8). Factors are floored at
    1e-4 before the fractional powers (pytorch-msssim clips at 0, whose derivative is infinite),
    so the gradient stays finite. Needs H, W >= 161 for 5 scales (else ShapeError).
    Differentiable; matches pytorch-msssim's ``ms_ssim`` on even sizes (tests/test_losses.py).
    """
    import torch.nn.functional as F

    n = len(weights)
    need = (_SSIM_WIN - 1) * 2 ** (n - 1) + 1
    h, w_ = pred.shape[-2:]
    if h < need or w_ < need:
        raise ShapeError(
            f"ms_ssim: images of shape {tuple(pred.shape)} are too small for {n} scales with an "
            f"{_SSIM_WIN}x{_SSIM_WIN} window (need H, W >= {need}); use ssim_kind='ssim'"
        )
    lead = pred.shape[:-3]
    x = pred.reshape(-1, 3, h, w_)
    y = target.reshape(-1, 3, h, w_)
    log_total = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
    for j, wj in enumerate(weights):
        last = j == n - 1
        k1 = 0.01 if last else 1e4
        s = _metrics.ssim_map(x, y, data_range=data_range, k1=k1).mean(dim=(-2, -1))
        log_total = log_total + wj * torch.log(s.clamp_min(_MS_SSIM_FLOOR))
        if not last:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    return torch.exp(log_total).mean(dim=-1).reshape(lead)


# ----------------------------------------------------------------------------------------------
# Colourization family
# ----------------------------------------------------------------------------------------------


class _LabFamily(_ColorLoss):
    """Shared: inputs are sRGB (default) or CIELAB tensors (``input_space="lab"``)."""

    def __init__(self, *, input_space: Literal["srgb", "lab"] = "srgb", loss_weight: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        self.input_space = _check_space(input_space, type(self).__name__ + " (input_space)", ("srgb", "lab"))

    def _planes(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L*/100, a*/100, b*/100)."""
        return _opponent(x, "lab", is_lab=self.input_space == "lab")

    def _chroma_planes(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(a_pred, b_pred, C_pred with the grey-escape gradient, a_target, b_target, C_target), all /100."""
        _, ap, bp = self._planes(pred)
        _, at, bt = self._planes(target)
        ct = safe_hypot(at, bt)
        ua, ub = _unit_direction(at, bt, ct)
        return ap, bp, chroma_toward(ap, bp, ua, ub, _TAU["lab"]), at, bt, ct

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
        self.l_weight = _check_nonneg(l_weight, "l_weight", "LabLoss")
        self.ab_weight = _check_nonneg(ab_weight, "ab_weight", "LabLoss")
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
        w = _pixel_weight(weight, m, "LabLoss")
        return self.loss_weight * _reduce_pixels(m, w, self.reduction)


class SaturationLoss(_LabFamily):
    """|C*_pred - C*_target| / 100 per pixel (CIELAB chroma, ``colorfid.color.chroma``).

    Penalises both washed-out and over-saturated predictions. Scale: 0 to ~1.3 (a pure blue vs
    grey); typical 0.02-0.1. Default weight 1. A grey prediction of a coloured target gets a
    gradient toward the target's hue (:func:`chroma_toward`). ``reduction="none"``: (N, 1, H, W).
    """

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        cp, ct = self._chroma_pair(pred, target)
        m = (cp - ct).abs()
        return self.loss_weight * _reduce_pixels(m, _pixel_weight(weight, m, "SaturationLoss"), self.reduction)


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
        return self.loss_weight * _reduce_pixels(m, _pixel_weight(weight, m, "ConfidenceLoss"), self.reduction)


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
    mv, ma, mb = _image_means(v, w), _image_means(va, w), _image_means(vb, w)
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
        k = _check_nonneg(kappa, "kappa", "HueDiversityLoss")
        if k == 0:
            raise ConfigError("HueDiversityLoss: kappa must be > 0 (C* units)")
        self.kappa = k

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        ap, bp, cp, at, bt, ct = self._chroma_planes(pred, target)
        w = _pixel_weight(weight, ct, "HueDiversityLoss")
        k = self.kappa * _PLANE_SCALE["lab"]
        dp = _hue_dispersion(ap, bp, cp, k, w)
        dt = _hue_dispersion(at, bt, ct, k, w)
        return self.loss_weight * _reduce_images((dp - dt).abs(), self.reduction)


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
        self.div_weight = _check_nonneg(div_weight, "div_weight", o)
        self.sat_weight = _check_nonneg(sat_weight, "sat_weight", o)
        self.div_tau = _check_nonneg(div_tau, "div_tau", o)
        self.sat_tau = _check_nonneg(sat_tau, "sat_tau", o)
        self.kappa = _check_nonneg(kappa, "kappa", o)
        for n, v in (("div_tau", self.div_tau), ("sat_tau", self.sat_tau), ("kappa", self.kappa)):
            if v == 0:
                raise ConfigError(f"{o}: {n} must be > 0")
        self.relative = bool(relative)

    def _penalties(self, a: Tensor, b: Tensor, c: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        d = _hue_dispersion(a, b, c, self.kappa * _PLANE_SCALE["lab"], w)
        s = _image_means(c, w)
        return torch.exp(-d / self.div_tau), torch.exp(-s / self.sat_tau)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        ap, bp, cp, at, bt, ct = self._chroma_planes(pred, target)
        w = _pixel_weight(weight, ct, "ColorDiversityLoss")
        pd, ps = self._penalties(ap, bp, cp, w)
        if self.relative:
            td, ts = self._penalties(at, bt, ct, w)
            pd, ps = torch.relu(pd - td), torch.relu(ps - ts)
        v = self.div_weight * pd + self.sat_weight * ps
        return self.loss_weight * _reduce_images(v, self.reduction)


# ----------------------------------------------------------------------------------------------
# Loss-weight schedules
# ----------------------------------------------------------------------------------------------

_STAGE_KEYS = ("start", "weights", "warmup")
_SCHEDULE_KEYS = ("stages", "allow_zero_reconstruction", "reconstruction_keys", "known_keys")


@dataclass(frozen=True)
class ScheduleStage:
    """One stage: from iteration ``start`` the named weights take the values in ``weights``.

    ``warmup`` ramps them linearly from the value in effect just before ``start`` (0 for a name
    not set before) over that many iterations: an int applies to every name of the stage, a
    mapping ``{name: iterations}`` to the names it lists (the others switch at ``start``).
    Names not in ``weights`` keep their previous value.
    """

    start: int
    weights: Mapping[str, float]
    warmup: int | Mapping[str, int] = 0

    def warmup_of(self, key: str) -> int:
        if isinstance(self.warmup, Mapping):
            return int(self.warmup.get(key, 0))
        return int(self.warmup)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class LossWeightSchedule:
    """Loss-term weights as a function of the training iteration: stages + linear warm-ups.

    ::

        sched = LossWeightSchedule.from_dict({
            "stages": [
                {"start": 0, "weights": {"l1": 1.0, "ssim": 1.0, "delta_e": 0.01}},
                {"start": 2000, "weights": {"chroma": 2.0, "hue": 5.0}, "warmup": 1000},
            ]})
        loss.set_weights(sched.weights(iteration))   # each step

    Refuses (:class:`~colorfid.errors.ConfigError`) any schedule under which a reconstruction
    term (``reconstruction_keys``, default ``("l1", "ssim")``) is 0 at some iteration — set to 0,
    or ramped up from 0 — unless ``allow_zero_reconstruction=True``: training without pixel
    supervision is almost always a typo (a real trainer lost several epochs to it). Weights must
    be finite and >= 0; the first stage starts at 0 and starts strictly increase.
    ``known_keys`` (optional) lists the allowed names (e.g. ``ColorAwareLoss.TERMS``); an
    unknown name then raises :class:`~colorfid.errors.UnknownNameError`.
    """

    stages: Sequence[ScheduleStage | Mapping[str, Any]]
    allow_zero_reconstruction: bool = False
    reconstruction_keys: Sequence[str] = RECONSTRUCTION_TERMS
    known_keys: Sequence[str] | None = None
    _stages: tuple[ScheduleStage, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.stages, (str, bytes, Mapping)) or not isinstance(self.stages, Sequence):
            raise ConfigError("LossWeightSchedule: 'stages' must be a list of stages")
        if len(self.stages) == 0:
            raise ConfigError("LossWeightSchedule: 'stages' is empty; give at least one stage starting at 0")
        if not isinstance(self.allow_zero_reconstruction, bool):
            raise ConfigError(
                f"LossWeightSchedule: allow_zero_reconstruction must be true/false, got {self.allow_zero_reconstruction!r}"
            )
        self.reconstruction_keys = tuple(self.reconstruction_keys)
        if self.known_keys is not None:
            self.known_keys = tuple(self.known_keys)
        stages = tuple(self._parse_stage(i, s) for i, s in enumerate(self.stages))
        if stages[0].start != 0:
            raise ConfigError(f"LossWeightSchedule: stages[0].start must be 0, got {stages[0].start}")
        for i in range(1, len(stages)):
            if stages[i].start <= stages[i - 1].start:
                raise ConfigError(
                    f"LossWeightSchedule: stages[{i}].start ({stages[i].start}) must be greater than "
                    f"stages[{i - 1}].start ({stages[i - 1].start})"
                )
        self._stages = stages
        self._check_reconstruction()

    def _parse_stage(self, i: int, s: ScheduleStage | Mapping[str, Any]) -> ScheduleStage:
        where = f"LossWeightSchedule: stages[{i}]"
        if isinstance(s, ScheduleStage):
            raw: Mapping[str, Any] = {"start": s.start, "weights": s.weights, "warmup": s.warmup}
        elif isinstance(s, Mapping):
            raw = s
            unknown = [k for k in raw if k not in _STAGE_KEYS]
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {list(_STAGE_KEYS)}")
        else:
            raise ConfigError(f"{where}: expected a mapping with keys {list(_STAGE_KEYS)}, got {type(s).__name__}")
        if "start" not in raw or "weights" not in raw:
            raise ConfigError(f"{where}: needs 'start' and 'weights'")
        start = raw["start"]
        if not _is_int(start) or start < 0:
            raise ConfigError(f"{where}.start must be an integer >= 0, got {start!r}")
        weights = raw["weights"]
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError(f"{where}.weights must be a non-empty mapping name -> weight, got {weights!r}")
        clean: dict[str, float] = {}
        for k, v in weights.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}.weights: names must be strings, got {k!r}")
            if self.known_keys is not None and k not in self.known_keys:
                raise UnknownNameError(f"{where}.weights: unknown term {k!r}; known: {list(self.known_keys)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{where}.weights.{k} must be a finite number >= 0, got {v!r}")
            clean[k] = float(v)
        warmup = raw.get("warmup", 0)
        if isinstance(warmup, Mapping):
            wm: dict[str, int] = {}
            for k, v in warmup.items():
                if k not in clean:
                    raise ConfigError(
                        f"{where}.warmup.{k}: {k!r} is not among this stage's weights {sorted(clean)}"
                    )
                if not _is_int(v) or v < 0:
                    raise ConfigError(f"{where}.warmup.{k} must be an integer >= 0, got {v!r}")
                wm[k] = v
            warmup = wm
        elif not _is_int(warmup) or warmup < 0:
            raise ConfigError(f"{where}.warmup must be an integer >= 0 or a mapping name -> integer, got {warmup!r}")
        return ScheduleStage(start=start, weights=clean, warmup=warmup)

    def _check_reconstruction(self) -> None:
        if self.allow_zero_reconstruction:
            return
        prev: dict[str, float] = {}
        for i, st in enumerate(self._stages):
            for k, v in st.weights.items():
                if k not in self.reconstruction_keys:
                    continue
                if v == 0:
                    raise ConfigError(
                        f"LossWeightSchedule: stages[{i}].weights.{k} = 0 sets reconstruction term {k!r} to "
                        f"zero from iteration {st.start}: the model would train without pixel supervision. "
                        "Pass allow_zero_reconstruction=True (YAML: allow_zero_reconstruction: true) if intended."
                    )
                if st.warmup_of(k) > 0 and prev.get(k, 0.0) == 0:
                    raise ConfigError(
                        f"LossWeightSchedule: stages[{i}] ramps reconstruction term {k!r} up from 0 "
                        f"(warmup {st.warmup_of(k)}), so it is 0 at iteration {st.start}. Give it a non-zero "
                        "value in an earlier stage or no warmup, or pass allow_zero_reconstruction=True."
                    )
            prev.update(st.weights)

    # -- queries -----------------------------------------------------------------------------
    def weights(self, iteration: int) -> dict[str, float]:
        """The weights in effect at ``iteration`` (every name set by a stage so far)."""
        if not _is_int(iteration) or iteration < 0:
            raise UsageError(f"LossWeightSchedule.weights: iteration must be an integer >= 0, got {iteration!r}")
        cur: dict[str, float] = {}
        st_list = self._stages
        for j, st in enumerate(st_list):
            if st.start > iteration:
                break
            nxt = st_list[j + 1].start if j + 1 < len(st_list) else None
            at = nxt if nxt is not None and nxt <= iteration else iteration
            new = dict(cur)
            for k, v in st.weights.items():
                prev = cur.get(k, 0.0)
                w = st.warmup_of(k)
                frac = 1.0 if w == 0 else min(1.0, (at - st.start) / w)
                new[k] = prev + (v - prev) * frac
            cur = new
        return cur

    @property
    def keys(self) -> tuple[str, ...]:
        """Every name any stage sets, in first-appearance order."""
        seen: dict[str, None] = {}
        for st in self._stages:
            for k in st.weights:
                seen.setdefault(k, None)
        return tuple(seen)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossWeightSchedule:
        """Build from plain data (as read from YAML/TOML). Unknown keys raise ConfigError."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"LossWeightSchedule.from_dict: expected a mapping, got {type(d).__name__}")
        unknown = [k for k in d if k not in _SCHEDULE_KEYS]
        if unknown:
            raise ConfigError(f"LossWeightSchedule: unknown key(s) {unknown}; known: {list(_SCHEDULE_KEYS)}")
        if "stages" not in d:
            raise ConfigError("LossWeightSchedule: missing 'stages'")
        kw: dict[str, Any] = {"stages": d["stages"]}
        if "allow_zero_reconstruction" in d:
            kw["allow_zero_reconstruction"] = d["allow_zero_reconstruction"]
        for key in ("reconstruction_keys", "known_keys"):
            if key in d and d[key] is not None:
                v = d[key]
                if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
                    raise ConfigError(f"LossWeightSchedule: {key} must be a list of names, got {v!r}")
                kw[key] = tuple(v)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {
            "stages": [
                {"start": s.start, "weights": dict(s.weights),
                 "warmup": dict(s.warmup) if isinstance(s.warmup, Mapping) else s.warmup}
                for s in self._stages
            ],
            "allow_zero_reconstruction": self.allow_zero_reconstruction,
            "reconstruction_keys": list(self.reconstruction_keys),
        }
        if self.known_keys is not None:
            out["known_keys"] = list(self.known_keys)
        return out


# ----------------------------------------------------------------------------------------------
# BasicSR
# ----------------------------------------------------------------------------------------------

#: Every loss class by name: what ``register_basicsr`` registers, and what the NAFNet-fork
#: recipe (``globals().update(BASICSR_LOSSES)`` in ``basicsr/models/losses/__init__.py``) adds.
BASICSR_LOSSES: dict[str, type[nn.Module]] = {
    "ColorAwareLoss": ColorAwareLoss,
    "LabLoss": LabLoss,
    "SaturationLoss": SaturationLoss,
    "HueDiversityLoss": HueDiversityLoss,
    "ConfidenceLoss": ConfidenceLoss,
    "ColorDiversityLoss": ColorDiversityLoss,
}


def register_basicsr(registry: Any = None) -> list[str]:
    """Register every colorfid loss in BasicSR's ``LOSS_REGISTRY``; return the names added.

    After ``import colorfid.losses; colorfid.losses.register_basicsr()`` a BasicSR YAML can say
    ``pixel_opt: {type: ColorAwareLoss, loss_weight: 1.0, space: ycbcr}``. Idempotent: a class
    already registered is skipped. ``registry`` overrides the target (any object with BasicSR's
    ``register(obj)`` / ``__contains__`` / ``get(name)``).

    Raises :class:`~colorfid.errors.MissingDependencyError` when basicsr cannot be imported, and
    :class:`~colorfid.errors.UsageError` when a *different* object already holds one of the names.
    """
    if registry is None:
        try:
            from basicsr.utils.registry import LOSS_REGISTRY  # type: ignore[import-not-found]
        except ImportError as exc:
            raise MissingDependencyError(
                "register_basicsr: cannot import basicsr.utils.registry.LOSS_REGISTRY "
                f"({exc}); install BasicSR (pip install basicsr). For NAFNet's fork, which has no "
                "registry, add to basicsr/models/losses/__init__.py: "
                "'from colorfid.losses import BASICSR_LOSSES' and 'globals().update(BASICSR_LOSSES)'"
            ) from exc
        registry = LOSS_REGISTRY
    added: list[str] = []
    for name, cls in BASICSR_LOSSES.items():
        if name in registry:
            existing = registry.get(name)
            if existing is cls:
                continue
            raise UsageError(
                f"register_basicsr: LOSS_REGISTRY already holds a different {name!r} "
                f"({getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)})"
            )
        registry.register(cls)
        added.append(name)
    return added
