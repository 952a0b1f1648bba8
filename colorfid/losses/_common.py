"""What every colorfid loss shares: BasicSR's ``loss_weight`` / ``reduction`` / ``weight`` contract,
argument checks, pixel weights and reductions, full precision under autocast, and the opponent
colour planes (with :func:`chroma_toward` and :func:`hue_term`) the chroma and hue terms use.

Opponent planes: ``lab`` gives L*/100, a*/100, b*/100 (a pure sRGB blue, C* = 134, is 1.34);
``ycbcr`` gives BT.601 Y, Cb - 128/255, Cr - 128/255 in [0, 1] units (the same blue is 0.445).
One C* unit is about 0.0033 YCbCr units.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from .._tensors import REDUCED, check_reduction
from ..color import safe_hypot, srgb_to_lab, srgb_to_ycbcr
from ..errors import ConfigError, DTypeError, ShapeError, UnknownNameError

__all__ = [
    "SPACES", "NEUTRAL_CBCR", "PLANE_SCALE", "TAU", "KAPPA", "check_space", "check_nonneg", "check_pair",
    "pixel_weight", "weighted_mean", "image_means", "reduce_pixels", "full_precision", "opponent", "unit_direction",
    "hue_term", "chroma_toward", "ColorLoss",
]

#: The colour spaces of the chroma and hue terms.
SPACES = ("ycbcr", "lab")
#: BT.601 studio-range neutral Cb/Cr, in [0, 1] units.
NEUTRAL_CBCR = 128.0 / 255.0
#: Opponent-plane scale per space (module notes).
PLANE_SCALE = {"lab": 0.01, "ycbcr": 1.0}
#: chroma_toward's neutral zone (about 0.5 C*) and the hue term's half-weight target chroma
#: (10 C*, MetricProtocol.hue_chroma_floor) in each space's units.
TAU = {"lab": 0.005, "ycbcr": 0.0017}
KAPPA = {"lab": 0.10, "ycbcr": 0.033}


def check_space(space: str, owner: str, known: Sequence[str] = SPACES) -> str:
    if space not in known:
        raise UnknownNameError(f"{owner}: unknown space {space!r}; known: {list(known)}")
    return space


def check_nonneg(value: float, name: str, owner: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return v


def check_pair(pred: Tensor, target: Tensor, owner: str) -> tuple[Tensor, Tensor]:
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
    if dtype in REDUCED:
        dtype = torch.float32
    return pred.to(dtype), target.to(dtype)


def pixel_weight(weight: Tensor | None, like: Tensor, owner: str) -> Tensor | None:
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


def weighted_mean(m: Tensor, w: Tensor | None) -> Tensor:
    """Global (weighted) mean of a per-pixel map: sum(m w) / sum(w), as BasicSR."""
    if w is None:
        return m.mean()
    return (m * w).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def image_means(m: Tensor, w: Tensor | None) -> Tensor:
    """Per-image (weighted) means of a (..., H, W) map -> (...)."""
    if w is None:
        return m.mean(dim=(-2, -1))
    return (m * w).sum(dim=(-2, -1)) / w.sum(dim=(-2, -1)).clamp_min(torch.finfo(w.dtype).tiny)


def reduce_pixels(m: Tensor, w: Tensor | None, reduction: str) -> Tensor:
    """Reduce a per-pixel map (..., H, W); ``"none"`` gives (..., 1, H, W) (times the weight)."""
    if reduction == "mean":
        return weighted_mean(m, w)
    mw = m if w is None else m * w
    if reduction == "sum":
        return mw.sum()
    return mw.unsqueeze(-3)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast inside a loss (colour maths in float32/float64)."""
    if device.type in ("cpu", "cuda"):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - other backends
        yield


def opponent(x: Tensor, space: str, *, is_lab: bool = False) -> tuple[Tensor, Tensor, Tensor]:
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
        return y, cb - NEUTRAL_CBCR, cr - NEUTRAL_CBCR
    L, a, b = lab.unbind(-3)
    s = PLANE_SCALE["lab"]
    return L * s, a * s, b * s


def unit_direction(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
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


class ColorLoss(nn.Module):
    """Base of the colour losses: BasicSR's ``loss_weight`` / ``reduction`` / ``weight`` contract."""

    def __init__(self, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        name = type(self).__name__
        self.loss_weight = check_nonneg(loss_weight, "loss_weight", name)
        self.reduction = check_reduction(reduction, name)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Any:
        owner = type(self).__name__
        pred, target = check_pair(pred, target, owner)
        with full_precision(pred.device):
            return self._forward(pred, target, weight, **kwargs)

    def _forward(self, pred: Tensor, target: Tensor, weight: Tensor | None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"
