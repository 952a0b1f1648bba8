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
* No absolute hue angle is ever rounded. The hue difference comes from the cross and dot
  products of the two (a', b) vectors: ΔH'² = 2 (C1'C2' - a1'a2' - b1b2), evaluated as
  2 X² / (C1'C2' + a1'a2' + b1b2) for |Δh'| <= 90° (X the cross product, formed from Δa, Δb,
  or from the products where one chroma is ~0 and that form would cancel: whichever has the
  smaller rounding bound), and the sign of Δh' is the sign of X. The branch at
  |h1' - h2'| = 180° (where the formula is discontinuous) is therefore decided from an exact
  sign: opposite hues give X = 0 exactly and fall in Sharma's "<= 180°" branch (eq. 10) in
  float32 as in float64 (pair 14, which a naive float32 implementation misses by 0.058). The
  mean hue h̄' (eq. 14) is the unit bisector of the two hue directions (Sharma's branch rules
  select exactly the bisector of the shorter arc); T (eq. 15) is a polynomial in it, and only
  h̄' - 275° (eq. 16) is an angle, taken near its own zero (see ciede2000).
* float32 inputs are computed in mixed precision (float64 where ΔE inherits the rounding with
  weight ~1, float32 for G, R_T and S_L's root) and rounded once: within 3e-5 of the float64
  result on the same inputs, ~3e-7 relative (tests/test_difference.py). Subnormal float32
  intermediates, which are very slow on CPUs, are kept out by clamps invisible at float32 precision.
* Gradients: square roots, divisions and the final norm are "double-where" guarded (gradient 0
  at their singular points, never NaN). The squared hue term ΔH'² carries the gradient of its
  algebraically identical smooth form 2 (C1' C2' - a1' a2' - b1 b2), so a prediction with zero
  chroma still receives a gradient pushing it toward a coloured target (the plain formula has
  zero or undefined gradient there). The blue-region cross term R_T ΔC' ΔH' passes no gradient
  within 1 C* unit of neutral, where its derivative grows as 1/sqrt(C) (ΔH' ~ sqrt(C1'C2')
  times an R_T whose hue derivative is ~ 1/C).
  The *value* is always the plain formula's; away from neutral the gradient is exact (except that
  ΔH' = sign(X) sqrt(ΔH'²) passes none through the cross term where the hues are exactly equal).
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

from . import _heap
from ._layout import chunk_pixels, chunked_pairs
from ._select import and_, below, gt, lt, ne0, not_, or_, plus_minus, safe, where, zero_unless
from ._tensors import REDUCED, channel_dim, check_float, finish
from .color import safe_hypot, safe_sqrt
from .errors import ColorfidWarning, ShapeError, UsageError

__all__ = ["delta_e_76", "delta_e_94", "delta_e_2000", "ciede2000", "CIE94_CONSTANTS"]

#: CIE 116-1995 parametric constants: application -> (kL, K1, K2).
CIE94_CONSTANTS: dict[str, tuple[float, float, float]] = {
    "graphic_arts": (1.0, 0.045, 0.015),
    "textiles": (2.0, 0.048, 0.014),
}

_DEG = math.pi / 180.0
_POW25_7 = 25.0**7
_RT_GRAD_MIN_CHROMA = 1.0  # C* units; gradient-only, see ciede2000


def _pair(lab1: Tensor, lab2: Tensor, dim: int, name: str) -> tuple[Tensor, Tensor, int, torch.dtype]:
    _heap.warm()
    d1 = channel_dim(lab1, dim, f"{name}: lab1")
    channel_dim(lab2, dim, f"{name}: lab2")
    check_float(lab1, f"{name}: lab1")
    check_float(lab2, f"{name}: lab2")
    if lab1.shape != lab2.shape:
        raise ShapeError(f"{name}: lab1 and lab2 differ in shape: {tuple(lab1.shape)} vs {tuple(lab2.shape)}")
    if lab1.dtype != lab2.dtype:
        raise ShapeError(f"{name}: lab1 and lab2 differ in dtype: {lab1.dtype} vs {lab2.dtype}")
    dtype = lab1.dtype
    if dtype in REDUCED:
        lab1, lab2 = lab1.float(), lab2.float()
    return lab1, lab2, d1, dtype


def delta_e_76(lab1: Tensor, lab2: Tensor, *, dim: int = -3) -> Tensor:
    """CIE76 ΔE*ab = ||lab1 - lab2||₂ (CIE 015:2018 §8.3.1). Gradient 0 (not NaN) where equal."""
    lab1, lab2, d, dtype = _pair(lab1, lab2, dim, "delta_e_76")
    diff = lab1 - lab2
    return finish(safe_sqrt((diff * diff).sum(dim=d)), dtype)


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
    return finish(safe_sqrt(total), dtype)


_COS275, _SIN275 = math.cos(275 * _DEG), math.sin(275 * _DEG)


def _t_coefficients() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Sharma's eq. 15, T(h) = 1 - 0.17 cos(h - 30°) + 0.24 cos 2h + 0.32 cos(3h + 6°) - 0.20 cos(4h - 63°),
    rewritten as P(c) + s Q(c) for the unit vector (c, s) = (cos h, sin h): cos kh = T_k(c) and
    sin kh = s U_{k-1}(c) (Chebyshev polynomials of the first and second kind), so
    cos(kh + φ) = T_k(c) cos φ - s U_{k-1}(c) sin φ. Returns the monomial coefficients of P (degree 4)
    and Q (degree 3), lowest first; the expansion is exact (tests/test_difference.py checks it
    against the cosine form)."""
    c30, s30 = math.cos(30 * _DEG), math.sin(30 * _DEG)
    c6, s6 = math.cos(6 * _DEG), math.sin(6 * _DEG)
    c63, s63 = math.cos(63 * _DEG), math.sin(63 * _DEG)
    # T1 = c, T2 = 2c² - 1, T3 = 4c³ - 3c, T4 = 8c⁴ - 8c² + 1;  U0 = 1, U2 = 4c² - 1, U3 = 8c³ - 4c.
    # -0.17 cos(h - 30°) = -0.17 (T1 cos30 + s U0 sin30);  0.24 cos 2h = 0.24 T2;
    # 0.32 cos(3h + 6°) = 0.32 (T3 cos6 - s U2 sin6);   -0.20 cos(4h - 63°) = -0.20 (T4 cos63 + s U3 sin63).
    p = (
        1.0 - 0.24 + 0.20 * -c63,  # c⁰: 1, 0.24·(-1), -0.20·cos63·(+1)
        -0.17 * c30 + 0.32 * c6 * -3.0,  # c¹
        0.24 * 2.0 - 0.20 * c63 * -8.0,  # c²
        0.32 * c6 * 4.0,  # c³
        -0.20 * c63 * 8.0,  # c⁴
    )
    q = (
        -0.17 * s30 - 0.32 * s6 * -1.0,  # c⁰
        -0.20 * s63 * -4.0,  # c¹
        -0.32 * s6 * 4.0,  # c²
        -0.20 * s63 * 8.0,  # c³
    )
    return p, q


_T_P, _T_Q = _t_coefficients()


def _horner(x: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """Σ coefficients[k] x^k (lowest first) by Horner's rule."""
    y = x * coefficients[-1] + coefficients[-2]
    for c in reversed(coefficients[:-2]):
        y = y * x + c
    return y


def _pow7(x: Tensor) -> Tensor:
    """x⁷ by four multiplications (a generic ``pow`` is far slower per element on CPU)."""
    x2 = x * x
    x3 = x2 * x
    return x3 * x3 * x


def _chroma_weight(c: Tensor) -> Tensor:
    """sqrt(C⁷ / (C⁷ + 25⁷)) (Sharma eqs. 4 and 17), in [0, 1).

    In float32, C is raised to at least 1e-4 first: C⁷ below float32's smallest normal number
    (C < 3.4e-6) would be a subnormal, very slow on CPUs, and the
    weight there (< 1.3e-19) is invisible next to 1 + G or in R_T (the float64 value is kept
    exactly)."""
    if c.dtype == torch.float32:
        c = c.clamp_min(1e-4)
    c7 = _pow7(c)
    return safe_sqrt(c7 / (c7 + _POW25_7))


#: atan(x) ≈ x Σ_k _ATAN_COEFFS[k] x^(2k) for x in [0, 1]: the least-squares fit of atan(x)/x as a
#: polynomial of degree 9 in x² on 400 Chebyshev nodes of [0, 1] (numpy.linalg.lstsq); max |error|
#: 2.1e-9 rad (tests/test_difference.py refits it and checks it against numpy.arctan).
_ATAN_COEFFS = (
    0.9999999990537071, -0.33333296715154503, 0.19998542266975558, -0.14264389793712043,
    0.10953449851812065, -0.08407879224305936, 0.05804045195616442, -0.03126450651174281,
    0.01096244311713003, -0.001804490174444423,
)


def _atan2_degrees(y: Tensor, x: Tensor) -> Tensor:
    """atan2(y, x) in degrees, (-180, 180], by octant reduction and the polynomial _ATAN_COEFFS.

    For the float32 path's Δθ only (eq. 16): within 2.1e-9 rad of atan2 plus the input
    precision's rounding (~1e-7 rad in float32, as torch.atan2's), at a third of its cost on CPU.
    """
    ax, ay = x.abs(), y.abs()
    big = torch.maximum(ax, ay)
    r = torch.minimum(ax, ay) / safe(ne0(big), big)
    a = r * _horner(r * r, _ATAN_COEFFS)
    a = where(gt(ay - ax), (0.5 * math.pi) - a, a)
    a = where(lt(x), math.pi - a, a)
    return where(lt(y), -a, a) * (1.0 / _DEG)


def ciede2000(
    L1: Tensor, a1: Tensor, b1: Tensor, L2: Tensor, a2: Tensor, b2: Tensor,
    k_l: float, k_c: float, k_h: float,
) -> Tensor:
    """CIEDE2000 on channel planes (Sharma et al. 2005, eqs. 1-22). See the module notes.

    Evaluated without absolute hue angles and without cancellation: every difference is formed
    from the input differences (Δa, Δb, ΔL), so its rounding error is relative to ΔE rather than
    to the Lab magnitudes.

    * ΔC' = C2' - C1' = (C2'² - C1'²) / (C1' + C2'), with C2'² - C1'² = (1+G)² Δa (a1+a2) + Δb (b1+b2).
    * ΔH'² = 4 C1'C2' sin²(Δh'/2) = 2 (C1'C2' - a1'a2' - b1b2); with the cross product
      X = a1'b2 - b1a2' = (1+G)(ā Δb - b̄ Δa) (the product form where its rounding bound is
      smaller: one chroma ~0; both are exactly antisymmetric) and D± = C1'C2' ± (a1'a2' + b1b2) this is
      2 X² / D+ for |Δh'| <= 90° (no cancellation) and 2 D- beyond. ΔH' = sign(Δh') sqrt(ΔH'²).
    * h̄' (eq. 14) as a unit vector: the bisector C2' (a1', b1) + C1' (a2', b2) of the two hue
      directions for |Δh'| <= 90°, the perpendicular of C1' (a2', b2) - C2' (a1', b1) turned by
      sign(Δh') beyond (Sharma's branch rules pick exactly the bisector of the shorter arc), the
      sum of the two vectors when either chroma is 0 (eq. 14's "h1' + h2'" case).
    * T (eq. 15) as a polynomial in that unit vector (_t_coefficients); only R_T's Δθ (eq. 16)
      needs an angle, h̄' - 275°, taken as atan2 of the vector turned by -275°.

    float32 inputs: G (eqs. 2-4), R_T (eqs. 16, 17, 21: one atan2, exp and sin) and S_L's square
    root are evaluated in float32; everything that ΔE inherits with weight ~1 (C', the
    differences, h̄', T, the three quotients and their sum) in float64; the result is rounded
    once. float32 vs float64 on the same inputs: within 3e-5, ~3e-7 relative
    (tests/test_difference.py). float64 and reduced-precision inputs (computed in float32) take
    the same code.
    """
    lo = L1.dtype
    hp = torch.float64 if lo == torch.float32 else lo
    grad = torch.is_grad_enabled() and any(v.requires_grad for v in (L1, a1, b1, L2, a2, b2))

    # eqs. 2-4 in the input precision: G is common to both colours and enters as s = 1 + G.
    c_bar = 0.5 * (safe_hypot(a1, b1) + safe_hypot(a2, b2))
    s = 1.0 + (0.5 - 0.5 * _chroma_weight(c_bar)).to(hp)
    A1, B1, A2, B2 = (v.to(hp) for v in (a1, b1, a2, b2))
    a1p, a2p = A1 * s, A2 * s
    c1p = safe_hypot(a1p, B1)
    c2p = safe_hypot(a2p, B2)

    # eqs. 8-11 from the differences.
    dl = L2.to(hp) - L1.to(hp)
    da, db = A2 - A1, B2 - B1
    num_c = s * s * da * (A1 + A2) + db * (B1 + B2)  # C2'² - C1'²
    # X = a1' b2 - b1 a2' in two forms, each exactly antisymmetric in the two colours: from the
    # differences (accurate for near colours) or from the products (accurate when one chroma is
    # ~0, where the first cancels to 0 and would flip h̄' by 180° with the argument order). The
    # form with the smaller rounding bound is taken; the choice is symmetric in the colours.
    mid_h, mid_v = 0.5 * (A1 + A2) * db, 0.5 * (B1 + B2) * da
    prod_h, prod_v = a1p * B2, B1 * a2p
    by_products = lt(prod_h.abs() + prod_v.abs() - s * (mid_h.abs() + mid_v.abs()))
    cross = where(by_products, prod_h - prod_v, s * (mid_h - mid_v))
    dot = a1p * a2p + B1 * B2
    cc = c1p * c2p
    chromatic = ne0(cc)
    near = and_(chromatic, not_(lt(dot)))  # both chromatic and |Δh'| <= 90°
    d_near = safe(near, cc + dot)
    dh2 = where(near, 2.0 * cross * cross / d_near, 2.0 * (cc - dot))
    dh2 = zero_unless(chromatic, dh2)
    if grad:
        # ΔH'² keeps its value but takes the gradient of 2 (C1'C2' - a1'a2' - b1 b2), the same
        # function in a form that is smooth at zero chroma: a neutral prediction is pushed toward
        # a coloured target.
        smooth = 2.0 * (cc - dot)
        dh2 = dh2.detach() + (smooth - smooth.detach())
    # sign(Δh'): that of the cross product; exactly opposite hues (cross = 0) follow Sharma's
    # "|h2' - h1'| <= 180°" branch: Δh' = +180° iff h1' < 180°, i.e. b1 > 0, or b1 = 0 and a1' > 0.
    h1_low = or_(gt(B1), and_(not_(ne0(B1)), gt(A1)))
    sign = where(ne0(cross), plus_minus(gt(cross), cross), plus_minus(h1_low, cross))
    dhp = sign * safe_sqrt(dh2)

    # eq. 14: h̄' as a unit vector (hc, hs).
    px = c1p * a2p - c2p * a1p
    py = c1p * B2 - c2p * B1
    vx = where(chromatic, where(near, c2p * a1p + c1p * a2p, py * sign), a1p + a2p)
    vy = where(chromatic, where(near, c2p * B1 + c1p * B2, -px * sign), B1 + B2)
    n2 = vx * vx + vy * vy
    has_hue = ne0(n2)
    inv = 1.0 / torch.sqrt(safe(has_hue, n2))
    hc = where(has_hue, vx * inv, torch.ones_like(vx))  # hue 0 when both colours are neutral
    hs = zero_unless(has_hue, vy * inv)

    # eq. 15.
    t = _horner(hc, _T_P) + hs * _horner(hc, _T_Q)

    # eqs. 16, 17, 21: R_T in the input precision. Δθ needs h̄' - 275° in [-275°, 85°).
    u = (hc * _COS275 + hs * _SIN275).to(lo)
    v = (hs * _COS275 - hc * _SIN275).to(lo)
    d275 = _atan2_degrees(v, u) if lo != hp else torch.atan2(v, u) * (1.0 / _DEG)
    d275 = where(lt(d275, 85.0), d275, d275 - 360.0)
    q = d275 * (1.0 / 25.0)
    q2 = q * q
    if lo == torch.float32:
        # exp(-80) = 1.8e-35 is still a normal float32 (see _chroma_weight); beyond |h̄' - 275°| =
        # 224°, where this bites, R_T < 4e-35.
        q2 = q2.clamp_max(80.0)
    cp_bar = 0.5 * (c1p + c2p)
    r_t = (-2.0 * torch.sin((60.0 * _DEG) * torch.exp(-q2)) * _chroma_weight(cp_bar.to(lo))).to(hp)

    # eqs. 18-22. S_L = 1 + 0.015 l / sqrt(20 + l), l = (L̄' - 50)², as sqrt(20 + l) / (sqrt(20 + l) + 0.015 l)
    # (its square root in the input precision: S_L - 1 <= 0.74 damps that rounding).
    l50 = (0.5 * (L1.to(hp) + L2.to(hp)) - 50.0).square()
    root = torch.sqrt((20.0 + l50).to(lo)).to(hp)
    # (k = 1, the reference conditions, skips a multiplication per term)
    den_l = root + 0.015 * l50  # S_L sqrt(20 + l)
    tl = dl * root / (den_l if k_l == 1.0 else k_l * den_l)
    den_c = (c1p + c2p) * (1.0 + 0.045 * cp_bar)  # S_C (C1' + C2')
    den_c = safe(ne0(den_c), den_c)
    tc = num_c / (den_c if k_c == 1.0 else k_c * den_c)
    s_h = 1.0 + 0.015 * cp_bar * t
    s_h = s_h if k_h == 1.0 else k_h * s_h
    th = dhp / s_h
    # The blue-region cross term R_T ΔC' ΔH': ΔH' ~ sqrt(C1'C2') and dh̄'/d(a', b) ~ 1/C', so near a
    # neutral colour its derivative grows as 1/sqrt(C') (~25x the usual size at an sRGB grey,
    # C* ~ 0.005) and would outweigh every other term of a loss. Within 1 C* unit of neutral
    # (where hue is not defined perceptually) the term keeps its exact value but passes no
    # gradient; elsewhere its gradient is exact.
    cross_term = r_t * tc * th
    if grad:
        near_neutral = below(torch.minimum(c1p, c2p), _RT_GRAD_MIN_CHROMA)
        cross_term = where(near_neutral, cross_term.detach(), cross_term)
    # th² from ΔH'² when a gradient is needed (its smooth gradient, above); else th·th saves a division.
    th2 = dh2 / (s_h * s_h) if grad else th * th
    total = tl * tl + tc * tc + th2 + cross_term
    return safe_sqrt(total.to(lo))


# ----------------------------------------------------------------------------------------------
# The fused (compiled) path: inference only, fixed-size chunks so one compile serves every size.
# ----------------------------------------------------------------------------------------------

_FUSED_CHUNK = 1 << 18
_compiled: dict[tuple[str, torch.dtype], Callable[..., None]] = {}
_compile_lock = threading.Lock()


def _ciede2000_into(L1, a1, b1, L2, a2, b2, out, k_l, k_c, k_h) -> None:  # noqa: ANN001 - traced by dynamo
    """:func:`ciede2000` written into ``out`` (compiled, the store goes straight to ``out``)."""
    out.copy_(ciede2000(L1, a1, b1, L2, a2, b2, k_l, k_c, k_h))


def _compiled_kernel(device: torch.device, dtype: torch.dtype) -> Callable[..., None] | None:
    key = (device.type, dtype)
    with _compile_lock:
        if key not in _compiled:
            try:
                _compiled[key] = torch.compile(_ciede2000_into, dynamic=False, fullgraph=True)
            except Exception as exc:  # pragma: no cover - depends on the toolchain
                warnings.warn(f"delta_e_2000(fused=True): torch.compile unavailable ({exc}); using eager", ColorfidWarning, stacklevel=3)
                _compiled[key] = None  # type: ignore[assignment]
        return _compiled[key]


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

    Without gradients the eager path works in chunks of 2^16 pixels on the CPU (cache-resident
    temporaries; 2^22 on GPUs, where every chunk costs kernel launches), so memory stays bounded
    (a few MiB of working set on the CPU, plus the output). Memory layout: the planes
    of a contiguous tensor are read in place; a tensor whose channels are innermost in memory (a
    ``(3, H, W)`` view of an ``(H, W, 3)`` array, ``channels_last``) is de-interleaved one chunk
    at a time (slower: the transpose is a separate pass over memory); any other layout is copied
    once.
    """
    lab1, lab2, d, dtype = _pair(lab1, lab2, dim, "delta_e_2000")
    k = (float(k_l), float(k_c), float(k_h))
    needs_grad = torch.is_grad_enabled() and (lab1.requires_grad or lab2.requires_grad)
    if needs_grad:
        L1, a1, b1 = lab1.unbind(d)
        L2, a2, b2 = lab2.unbind(d)
        return finish(ciede2000(L1, a1, b1, L2, a2, b2, *k), dtype)
    with torch.no_grad():
        if fused and os.environ.get("COLORFID_DISABLE_FUSED") != "1":
            kernel = _compiled_kernel(lab1.device, lab1.dtype)
            if kernel is not None:
                return finish(chunked_pairs(lab1, lab2, d, kernel, _FUSED_CHUNK, True, k), dtype)
        step = chunk_pixels(lab1.device)
        if lab1.numel() // 3 <= step:
            L1, a1, b1 = lab1.unbind(d)
            L2, a2, b2 = lab2.unbind(d)
            return finish(ciede2000(L1, a1, b1, L2, a2, b2, *k), dtype)
        return finish(chunked_pairs(lab1, lab2, d, _ciede2000_into, step, False, k), dtype)
