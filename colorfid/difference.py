"""Colour differences ΔE between CIELAB tensors: CIE76, CIE94 and CIEDE2000.

Inputs are CIELAB tensors in CIE units (L* in [0, 100], a*, b* roughly [-128, 128]) with the
channel dimension ``dim`` (default -3); the result is the per-pixel ΔE map with that dimension
removed, in ΔE units, dtype and device of the inputs (float16/bfloat16 are computed in float32
and cast back). All three are exact in float64, differentiable in float32, and have finite
gradients everywhere.

Sources
-------
* CIE76: CIE 015:2018 §8.3.1, ΔE*ab = Euclidean distance in CIELAB.
* CIE94: CIE 116-1995; graphic-arts constants kL = 1, K1 = 0.045, K2 = 0.015, textiles
  kL = 2, K1 = 0.048, K2 = 0.014. Not symmetric: the first argument is the reference.
* CIEDE2000: CIE 142-2001, in the form of G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000
  color-difference formula: implementation notes, supplementary test data, and mathematical
  observations", Color Res. Appl. 30(1):21-30, 2005 (eqs. 1-22). Verified against all 34 pairs
  of their Table 1 in float64 and float32, both argument orders (tests/test_difference.py).

Numerical notes on CIEDE2000
----------------------------
* The hue difference Δh' is taken from ``atan2(a1' b2 - b1 a2', a1' a2' + b1 b2)`` rather than
  from the difference of two rounded angles, so the branch at |h1' - h2'| = 180° (where the
  formula is discontinuous) is decided from an exact sign: opposite hues give a cross product
  of exactly 0 and fall in Sharma's "<= 180°" branch (eq. 10) in float32 as in float64 (pair 14,
  which a naive float32 implementation misses by 0.058). The mean hue h̄' (eq. 14) is carried as
  a unit vector, h1' rotated by Δh'/2, which equals Sharma's branch formula in every case; T and
  h̄' - 275° are evaluated from it without ever rounding an absolute angle (see _ciede2000).
* Gradients: square roots, ``atan2`` and the final norm are "double-where" guarded (gradient 0
  at their singular points, never NaN). The squared hue term ΔH'² carries the gradient of its
  algebraically identical smooth form 2 (C1' C2' - a1' a2' - b1 b2), so a prediction with zero
  chroma still receives a gradient pushing it toward a coloured target (the plain formula has
  zero or undefined gradient there). The blue-region cross term R_T ΔC' ΔH' passes no gradient
  within 1 C* unit of neutral, where its derivative grows as 1/sqrt(C) (ΔH' ~ sqrt(C1'C2')
  times an R_T whose hue derivative is ~ 1/C).
  The *value* is always the plain formula's; away from neutral the gradient is exact.
* ``delta_e_2000(..., fused=True)`` evaluates the same formula through ``torch.compile`` (one
  fused kernel, fixed-size chunks, inference only); see :func:`delta_e_2000`.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Callable, Literal

import torch
from torch import Tensor

from .color import (
    _REDUCED, _above, _below, _channel_dim, _check_float, _nonzero, _pick, safe_atan2, safe_hypot, safe_sqrt,
)
from . import _heap
from .errors import ColorfidWarning, ShapeError, UsageError

__all__ = ["delta_e_76", "delta_e_94", "delta_e_2000", "CIE94_CONSTANTS"]

#: CIE 116-1995 parametric constants: application -> (kL, K1, K2).
CIE94_CONSTANTS: dict[str, tuple[float, float, float]] = {
    "graphic_arts": (1.0, 0.045, 0.015),
    "textiles": (2.0, 0.048, 0.014),
}

_DEG = math.pi / 180.0
_POW25_7 = 25.0**7
_RT_GRAD_MIN_CHROMA = 1.0  # C* units; gradient-only, see _ciede2000


def _pair(lab1: Tensor, lab2: Tensor, dim: int, name: str) -> tuple[Tensor, Tensor, int, torch.dtype]:
    _heap.warm()
    d1 = _channel_dim(lab1, dim, f"{name}: lab1")
    _channel_dim(lab2, dim, f"{name}: lab2")
    _check_float(lab1, f"{name}: lab1")
    _check_float(lab2, f"{name}: lab2")
    if lab1.shape != lab2.shape:
        raise ShapeError(f"{name}: lab1 and lab2 differ in shape: {tuple(lab1.shape)} vs {tuple(lab2.shape)}")
    if lab1.dtype != lab2.dtype:
        raise ShapeError(f"{name}: lab1 and lab2 differ in dtype: {lab1.dtype} vs {lab2.dtype}")
    dtype = lab1.dtype
    if dtype in _REDUCED:
        lab1, lab2 = lab1.float(), lab2.float()
    return lab1, lab2, d1, dtype


def _finish(y: Tensor, dtype: torch.dtype) -> Tensor:
    return y if y.dtype == dtype else y.to(dtype)


def delta_e_76(lab1: Tensor, lab2: Tensor, *, dim: int = -3) -> Tensor:
    """CIE76 ΔE*ab = ||lab1 - lab2||₂ (CIE 015:2018 §8.3.1). Gradient 0 (not NaN) where equal."""
    lab1, lab2, d, dtype = _pair(lab1, lab2, dim, "delta_e_76")
    diff = lab1 - lab2
    return _finish(safe_sqrt((diff * diff).sum(dim=d)), dtype)


def delta_e_94(
    lab1: Tensor,
    lab2: Tensor,
    *,
    dim: int = -3,
    application: Literal["graphic_arts", "textiles"] = "graphic_arts",
) -> Tensor:
    """CIE94 ΔE*94 (CIE 116-1995) with ``lab1`` as the reference (S_C, S_H use its chroma).

    ΔE94 = sqrt((ΔL/(kL S_L))² + (ΔC/S_C)² + ΔH²/S_H²), S_L = 1, S_C = 1 + K1 C1, S_H = 1 + K2 C1,
    ΔH² = Δa² + Δb² - ΔC² (clamped at 0 against rounding); kC = kH = 1.
    """
    if application not in CIE94_CONSTANTS:
        raise UsageError(f"delta_e_94: unknown application {application!r}; known: {sorted(CIE94_CONSTANTS)}")
    k_l, k1, k2 = CIE94_CONSTANTS[application]
    lab1, lab2, d, dtype = _pair(lab1, lab2, dim, "delta_e_94")
    L1, a1, b1 = lab1.unbind(d)
    L2, a2, b2 = lab2.unbind(d)
    c1 = safe_hypot(a1, b1)
    c2 = safe_hypot(a2, b2)
    dl = L1 - L2
    dc = c1 - c2
    da = a1 - a2
    db = b1 - b2
    dh2 = (da * da + db * db - dc * dc).clamp_min(0.0)
    sc = 1.0 + k1 * c1
    sh = 1.0 + k2 * c1
    total = (dl / k_l) ** 2 + (dc / sc) ** 2 + dh2 / (sh * sh)
    return _finish(safe_sqrt(total), dtype)


_COS30, _SIN30 = math.cos(30 * _DEG), math.sin(30 * _DEG)
_COS6, _SIN6 = math.cos(6 * _DEG), math.sin(6 * _DEG)
_COS63, _SIN63 = math.cos(63 * _DEG), math.sin(63 * _DEG)
_COS275, _SIN275 = math.cos(275 * _DEG), math.sin(275 * _DEG)


def _unit(x: Tensor, y: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """(x, y) / r, and (1, 0) where r == 0 (hue 0 by convention), with finite gradients."""
    nz = _nonzero(r)
    inv = 1.0 / _pick(nz, r, torch.ones_like(r))  # one division for both components
    return _pick(nz, x * inv, torch.ones_like(x)), y * inv * nz


def _pow7(x: Tensor) -> Tensor:
    """x⁷ by four multiplications (a generic ``pow`` costs ~20x more per element on CPU)."""
    x2 = x * x
    x3 = x2 * x
    return x3 * x3 * x


def _ciede2000(
    L1: Tensor, a1: Tensor, b1: Tensor, L2: Tensor, a2: Tensor, b2: Tensor,
    k_l: float, k_c: float, k_h: float,
) -> Tensor:
    """CIEDE2000 on channel planes (Sharma et al. 2005, eqs. 1-22). See the module notes.

    Angles are never carried as absolute degrees: Δh' comes from atan2 of the cross and dot
    products, the mean hue h̄' as a unit vector (h1' rotated by Δh'/2, which is Sharma's eq. 14
    in every branch), T from multiple-angle identities of that vector, and h̄' - 275° from one
    more atan2 near its own zero. Mathematically identical to the textbook evaluation.

    float32 inputs: the six transcendental calls (2 atan2, 2 sin, 1 cos, 1 exp) and the rotation
    term R_T run in float32, where their cost lies; all other arithmetic runs in float64 and the
    result is rounded once. A plain float32 evaluation accumulates ~1e-4 at ΔE ~ 150 (scikit-image's float32 path
    does); this one stays within 3e-5 of float64 (tests/test_difference.py).
    """
    out_dtype = L1.dtype
    hp = torch.float64 if out_dtype == torch.float32 else out_dtype
    L1, a1, b1, L2, a2, b2 = (v.to(hp) for v in (L1, a1, b1, L2, a2, b2))

    def lowp(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        return fn(*(a.to(out_dtype) for a in args)).to(hp)

    # eqs. 2-7: a' rescaling, C'.
    c_bar = 0.5 * (safe_hypot(a1, b1) + safe_hypot(a2, b2))
    c_bar7 = _pow7(c_bar)
    g = 0.5 * (1.0 - safe_sqrt(c_bar7 / (c_bar7 + _POW25_7)))
    a1p = a1 * (1.0 + g)
    a2p = a2 * (1.0 + g)
    c1p = safe_hypot(a1p, b1)
    c2p = safe_hypot(a2p, b2)

    # eqs. 8-10: differences. Δh' (radians) from exact cross/dot signs.
    dlp = L2 - L1
    dcp = c2p - c1p
    cc = c1p * c2p
    chromatic = _nonzero(cc)  # float 0/1 selectors throughout (see colorfid.color._pick)
    cross = a1p * b2 - b1 * a2p
    dot = a1p * a2p + b1 * b2
    dh = lowp(safe_atan2, cross, dot)
    # Exactly opposite hues: Sharma's "|h2' - h1'| <= 180°" branch, Δh' = h2' - h1' = ±180°,
    # positive iff h1' < 180°, i.e. b1 > 0, or b1 = 0 with a1' > 0.
    opposite = (1.0 - _nonzero(cross)) * _below(dot)
    h1_low = _above(b1) + (1.0 - _nonzero(b1)) * _above(a1p)  # the two terms exclude each other
    dh = _pick(opposite, math.pi * (2.0 * h1_low - 1.0), dh) * chromatic
    cos_half = lowp(torch.cos, 0.5 * dh)
    sin_half = lowp(torch.sin, 0.5 * dh)
    dhp_big = 2.0 * safe_sqrt(cc) * sin_half

    # ΔH'²: the plain value, with the gradient of 2 (C1'C2' - a1'a2' - b1 b2) (identical function).
    dh2 = dhp_big * dhp_big
    if dh2.requires_grad:
        dh2_smooth = 2.0 * (cc - dot)
        dh2 = dh2.detach() + (dh2_smooth - dh2_smooth.detach())

    # eqs. 12-14: means. h̄' as the unit vector (cos, sin): h1' + Δh'/2 when both are chromatic,
    # h1' + h2' (the non-zero one) otherwise.
    l_bar = 0.5 * (L1 + L2)
    cp_bar = 0.5 * (c1p + c2p)
    e1x, e1y = _unit(a1p, b1, c1p)
    e2x, e2y = _unit(a2p, b2, c2p)
    # (h1' + Δh'/2 and h2' - Δh'/2 are the same angle; their mean keeps ΔE exactly symmetric.)
    hc = _pick(
        chromatic,
        0.5 * ((e1x * cos_half - e1y * sin_half) + (e2x * cos_half + e2y * sin_half)),
        e1x * e2x - e1y * e2y,
    )
    hs = _pick(
        chromatic,
        0.5 * ((e1y * cos_half + e1x * sin_half) + (e2y * cos_half - e2x * sin_half)),
        e1y * e2x + e1x * e2y,
    )

    # eq. 15: T from cos/sin of h̄', 2h̄', 3h̄', 4h̄'.
    c2 = hc * hc - hs * hs
    s2 = 2.0 * hc * hs
    c3 = c2 * hc - s2 * hs
    s3 = s2 * hc + c2 * hs
    c4 = c2 * c2 - s2 * s2
    s4 = 2.0 * s2 * c2
    t = (
        1.0
        - 0.17 * (hc * _COS30 + hs * _SIN30)
        + 0.24 * c2
        + 0.32 * (c3 * _COS6 - s3 * _SIN6)
        - 0.20 * (c4 * _COS63 + s4 * _SIN63)
    )
    # eq. 16: Δθ needs h̄' - 275° in [-275°, 85°): an atan2 of h̄' rotated by -275°.
    # R_T (eqs. 16-17, 21) runs in the input precision: it scales the small cross term only, so
    # float32 there costs < 3e-7 relative in ΔE (tested) and saves ~12 % of the float32 time.
    hcl, hsl, cpl = (v.to(out_dtype) for v in (hc, hs, cp_bar))
    d275 = torch.atan2(hsl * _COS275 - hcl * _SIN275, hcl * _COS275 + hsl * _SIN275) / _DEG
    d275 = d275 - 360.0 * (1.0 - _below(d275, 85.0))
    q = d275 / 25.0
    d_theta = 30.0 * torch.exp(-(q * q))
    sin_2theta = torch.sin(2.0 * d_theta * _DEG)

    # eqs. 17-22.
    cp_bar7 = _pow7(cpl)
    r_c = 2.0 * safe_sqrt(cp_bar7 / (cp_bar7 + _POW25_7))
    sin_2theta, r_c = sin_2theta.to(hp), r_c.to(hp)
    l50 = (l_bar - 50.0).square()
    s_l = 1.0 + 0.015 * l50 / torch.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * cp_bar
    s_h = 1.0 + 0.015 * cp_bar * t
    r_t = -sin_2theta * r_c

    # (k = 1, the reference conditions, skips a multiplication per term)
    tl = dlp / (s_l if k_l == 1.0 else k_l * s_l)
    tc = dcp / (s_c if k_c == 1.0 else k_c * s_c)
    th = dhp_big / (s_h if k_h == 1.0 else k_h * s_h)
    # The blue-region cross term R_T ΔC' ΔH': ΔH' ~ sqrt(C1'C2') and dh̄'/d(a', b) ~ 1/C', so near a
    # neutral colour its derivative grows as 1/sqrt(C') (~25x the usual size at an sRGB grey,
    # C* ~ 0.005) and would outweigh every other term of a loss. Within 1 C* unit of neutral
    # (where hue is not defined perceptually) the term keeps its exact value but passes no
    # gradient; elsewhere its gradient is exact.
    cross_term = r_t * tc * th
    if cross_term.requires_grad:
        near_neutral = _below(torch.minimum(c1p, c2p), _RT_GRAD_MIN_CHROMA)
        cross_term = _pick(near_neutral, cross_term.detach(), cross_term)
    kh_sh = s_h if k_h == 1.0 else k_h * s_h
    total = tl * tl + tc * tc + dh2 / (kh_sh * kh_sh) + cross_term
    return safe_sqrt(total).to(out_dtype)


# ----------------------------------------------------------------------------------------------
# The fused (compiled) path: inference only, fixed-size chunks so one compile serves every size.
# ----------------------------------------------------------------------------------------------

_FUSED_CHUNK = 1 << 18
_EAGER_CHUNK = 1 << 16  # 512 KiB of float64 per temporary: stays in cache, no page faults
_compiled: dict[tuple[str, torch.dtype], Callable[..., Tensor]] = {}
_compile_lock = threading.Lock()


def _plain_ciede2000(L1, a1, b1, L2, a2, b2, k_l, k_c, k_h):  # noqa: ANN001 - traced by dynamo
    return _ciede2000(L1, a1, b1, L2, a2, b2, k_l, k_c, k_h)


def _compiled_kernel(device: torch.device, dtype: torch.dtype) -> Callable[..., Tensor] | None:
    key = (device.type, dtype)
    with _compile_lock:
        if key not in _compiled:
            try:
                _compiled[key] = torch.compile(_plain_ciede2000, dynamic=False, fullgraph=True)
            except Exception as exc:  # pragma: no cover - depends on the toolchain
                warnings.warn(f"delta_e_2000(fused=True): torch.compile unavailable ({exc}); using eager", ColorfidWarning, stacklevel=3)
                _compiled[key] = None  # type: ignore[assignment]
        return _compiled[key]


def _planes(lab: Tensor, d: int) -> tuple[Tensor, list[int]]:
    """View ``lab`` as (lead, 3, rest) around the channel dim ``d`` (a view when contiguous)."""
    out_shape = [s for i, s in enumerate(lab.shape) if i != d]
    lead = int(math.prod(lab.shape[:d]))
    return lab.reshape(lead, 3, -1), out_shape


def _chunked(lab1: Tensor, lab2: Tensor, d: int, kernel: Callable[..., Tensor], chunk: int, pad: bool, k: tuple[float, float, float]) -> Tensor:
    x1, out_shape = _planes(lab1, d)
    x2, _ = _planes(lab2, d)
    n, _, p = x1.shape
    out = torch.empty((n, p), dtype=x1.dtype, device=x1.device)
    for i in range(n):
        for s in range(0, p, chunk):
            e = min(s + chunk, p)
            args = [x1[i, 0, s:e], x1[i, 1, s:e], x1[i, 2, s:e], x2[i, 0, s:e], x2[i, 1, s:e], x2[i, 2, s:e]]
            if pad and e - s < chunk:
                args = [torch.nn.functional.pad(t, (0, chunk - (e - s))) for t in args]
            else:
                args = [t.contiguous() for t in args]
            out[i, s:e] = kernel(*args, *k)[: e - s]
    return out.reshape(out_shape)


def delta_e_2000(
    lab1: Tensor,
    lab2: Tensor,
    *,
    dim: int = -3,
    k_l: float = 1.0,
    k_c: float = 1.0,
    k_h: float = 1.0,
    fused: bool = False,
) -> Tensor:
    """CIEDE2000 ΔE00 between two CIELAB tensors (CIE 142-2001; Sharma, Wu & Dalal 2005).

    Parameters
    ----------
    lab1, lab2:
        CIELAB tensors of equal shape and dtype, channel dimension ``dim`` (L*, a*, b*).
    k_l, k_c, k_h:
        Parametric weighting factors (1 for the reference conditions).
    fused:
        Evaluate through ``torch.compile`` (one fused kernel per 2^18-pixel chunk). Opt-in:
        the first call per (device, dtype) compiles (tens of seconds on a CPU; Inductor caches
        the kernel on disk, so later processes start faster). Inference only: when a gradient
        is required the eager path is used. Agrees with the eager path to float rounding.

    Returns
    -------
    The per-pixel ΔE00 map (channel dim removed), >= 0, exactly 0 where the inputs are equal,
    exactly symmetric in its arguments.

    Without gradients the eager path works in chunks of 2^16 pixels (cache-resident temporaries), so memory stays bounded
    (a few MiB of working set, plus the output).
    """
    lab1, lab2, d, dtype = _pair(lab1, lab2, dim, "delta_e_2000")
    k = (float(k_l), float(k_c), float(k_h))
    needs_grad = torch.is_grad_enabled() and (lab1.requires_grad or lab2.requires_grad)
    if needs_grad:
        L1, a1, b1 = lab1.unbind(d)
        L2, a2, b2 = lab2.unbind(d)
        return _finish(_ciede2000(L1, a1, b1, L2, a2, b2, *k), dtype)
    with torch.no_grad():
        if fused and os.environ.get("COLORFID_DISABLE_FUSED") != "1":
            kernel = _compiled_kernel(lab1.device, lab1.dtype)
            if kernel is not None:
                return _finish(_chunked(lab1, lab2, d, kernel, _FUSED_CHUNK, True, k), dtype)
        if lab1.numel() // 3 <= _EAGER_CHUNK:
            L1, a1, b1 = lab1.unbind(d)
            L2, a2, b2 = lab2.unbind(d)
            return _finish(_ciede2000(L1, a1, b1, L2, a2, b2, *k), dtype)
        return _finish(_chunked(lab1, lab2, d, _ciede2000, _EAGER_CHUNK, False, k), dtype)
