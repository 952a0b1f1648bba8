"""Colour conversions in PyTorch: sRGB <-> linear RGB <-> CIE XYZ <-> CIELAB <-> LCh, YCbCr, HSV.

Conventions
-----------
* Images are tensors ``(..., 3, H, W)`` (any layout works: pass ``dim`` for the channel
  dimension, default ``-3``). sRGB values are *encoded* (non-linear) floats in [0, 1].
* CIELAB is in CIE units: L* in [0, 100], a*/b* roughly [-128, 128]; D65 white, CIE 1931 2°
  observer. Hue angles are in **degrees** in [0, 360).
* Functions keep the caller's dtype and device. float64 is the reference precision, float32
  the training precision; float16 / bfloat16 inputs are computed in float32 internally and the
  result is cast back (their mantissas are too short for the cube roots and matrix products).
* Gradients are finite everywhere (black, white, zero chroma, out of gamut): every square root,
  power, cube root and ``atan2`` with a singular derivative is guarded with the "double where"
  idiom, so no epsilon biases a value.

Which white and matrix
----------------------
sRGB -> XYZ uses the matrix printed in IEC 61966-2-1:1999 (4 decimals) and the CIELAB white is
D65 from its CIE 1931 chromaticity (0.3127, 0.3290), i.e. XYZ (0.95045593, 1, 1.08905775). That is
exactly what colour-science does (``colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x))``), and colorfid
matches it to <= 1e-10 in float64 (tests/test_color.py). scikit-image's ``rgb2lab`` instead uses a
6-digit matrix and the white (0.95047, 1, 1.08883); the two libraries differ by up to ~0.02 in
a*/b*. We follow colour-science because its numbers are the standard's own (normative matrix,
CIE white) rather than a re-derivation, and because colour-science is the reference the CIEDE2000
and CIELAB literature is checked against. Consequence worth knowing: with the normative matrix an
sRGB grey is not *exactly* neutral (C* ~ 0.005 at mid-grey; scikit-image: ~0.003) — far below
any chroma threshold colorfid uses. The inverse (XYZ -> sRGB) is the exact inverse of the forward
matrix, so Lab <-> sRGB round trips are exact; the standard's 4-decimal inverse differs from it by
<= 4.4e-5.

Sources: IEC 61966-2-1:1999 (sRGB transfer function); CIE 015:2018 (CIELAB, the CIE constants
epsilon = 216/24389, kappa = 24389/27); ITU-R BT.601 (YCbCr); A. R. Smith, "Color gamut transform
pairs", SIGGRAPH 1978 (HSV).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import _heap
from ._layout import CHUNK, chunk_pixels, deinterleave_index, layout
from ._select import above, below, is_compiling, nonzero, where
from ._tensors import REDUCED, channel_dim, check_float, finish
from .errors import DTypeError, RangeError

__all__ = [
    "D65_XY",
    "D65_XYZ",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "to_float",
    "check_srgb",
    "srgb_to_linear",
    "linear_to_srgb",
    "linear_rgb_to_xyz",
    "xyz_to_linear_rgb",
    "xyz_to_lab",
    "lab_to_xyz",
    "lab_to_lch",
    "lch_to_lab",
    "srgb_to_lab",
    "srgb_uint8_to_lab",
    "lab_to_srgb",
    "srgb_to_ycbcr",
    "srgb_to_hsv",
    "chroma",
    "hsv_saturation",
    "safe_sqrt",
    "safe_hypot",
    "safe_atan2",
]

# ----------------------------------------------------------------------------------------------
# Constants (float64)
# ----------------------------------------------------------------------------------------------

#: CIE 1931 2° chromaticity of illuminant D65 as used by sRGB (IEC 61966-2-1).
D65_XY: tuple[float, float] = (0.3127, 0.3290)


def _xy_to_XYZ(x: float, y: float) -> list[float]:
    return [x / y, 1.0, (1.0 - x - y) / y]


#: XYZ of the D65 reference white, Y = 1: (0.95045593, 1, 1.08905775).
D65_XYZ: Tensor = torch.tensor(_xy_to_XYZ(*D65_XY), dtype=torch.float64)
#: Linear sRGB -> XYZ (D65), float64, as printed in IEC 61966-2-1:1999; rows give X, Y, Z.
SRGB_TO_XYZ: Tensor = torch.tensor(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=torch.float64
)
#: XYZ (D65) -> linear sRGB: the exact float64 inverse of :data:`SRGB_TO_XYZ`.
XYZ_TO_SRGB: Tensor = torch.linalg.inv(SRGB_TO_XYZ)

_M_RGB2XYZ = SRGB_TO_XYZ.tolist()
_M_XYZ2RGB = XYZ_TO_SRGB.tolist()
_WHITE = D65_XYZ.tolist()
_M_RGB2XYZ_N = (SRGB_TO_XYZ / D65_XYZ[:, None]).tolist()  # linear sRGB -> (X/Xn, Y/Yn, Z/Zn)

# CIE 015 constants, written as exact ratios.
_LAB_EPS = 216.0 / 24389.0  # (6/29)^3
_LAB_KAPPA = 24389.0 / 27.0  # (29/3)^3
_LAB_DELTA = 6.0 / 29.0

# IEC 61966-2-1 transfer function.
_SRGB_DECODE_THRESHOLD = 0.04045
_SRGB_ENCODE_THRESHOLD = 0.0031308

# ----------------------------------------------------------------------------------------------
# Validation and dtype handling
# ----------------------------------------------------------------------------------------------


def _prepare(x: Tensor, dim: int, name: str) -> tuple[Tensor, int, torch.dtype]:
    """Validate, and upcast reduced precisions to float32. Returns (x, dim, caller dtype)."""
    _heap.warm()
    d = channel_dim(x, dim, name)
    check_float(x, name)
    dtype = x.dtype
    if dtype in REDUCED:
        x = x.float()
    return x, d, dtype


def to_float(image: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Convert an image to a float tensor in [0, 1] — the explicit path for integer images.

    ``uint8`` is divided by 255 and ``uint16`` by 65535 (the dtype's maximum); a float tensor is
    only cast to ``dtype``. Other integer dtypes (whose intended range is ambiguous) and bool raise
    :class:`~colorfid.errors.DTypeError`.
    """
    if not isinstance(image, Tensor):
        raise DTypeError(f"to_float: expected a torch.Tensor, got {type(image).__name__}")
    if not dtype.is_floating_point:
        raise DTypeError(f"to_float: target dtype must be floating point, got {dtype}")
    if image.is_floating_point():
        return image.to(dtype)
    if image.dtype == torch.uint8:
        return image.to(dtype) / 255.0
    if image.dtype == getattr(torch, "uint16", None):
        # uint16 has few kernels: widen through int32 first.
        return image.to(torch.int32).to(dtype) / 65535.0
    raise DTypeError(
        f"to_float: cannot tell the range of a {image.dtype} image; pass uint8, uint16 or float"
    )


def check_srgb(
    x: Tensor,
    *,
    dim: int = -3,
    clip: bool = False,
    name: str = "image",
    tol: float = 1e-3,
) -> Tensor:
    """Validate an encoded-sRGB image and return it (clamped to [0, 1] if ``clip``).

    Raises :class:`~colorfid.errors.DTypeError` for non-float tensors,
    :class:`~colorfid.errors.ShapeError` when the channel dimension is not 3, and
    :class:`~colorfid.errors.RangeError` for NaN/Inf or values outside ``[-tol, 1 + tol]`` unless
    ``clip=True`` (NaN/Inf raise even then). One reduction pass (``aminmax``) over the data.
    """
    channel_dim(x, dim, name)
    check_float(x, name)
    if x.numel() == 0:
        return x
    lo, hi = torch.aminmax(x.detach())
    lo_f, hi_f = float(lo), float(hi)
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
        bad = int((~torch.isfinite(x.detach())).sum())
        raise RangeError(f"{name}: {bad} non-finite value(s) (NaN/Inf) in a tensor of shape {tuple(x.shape)}")
    if lo_f < -tol or hi_f > 1.0 + tol:
        if not clip:
            raise RangeError(
                f"{name}: values must lie in [0, 1] (sRGB-encoded floats), found [{lo_f:.6g}, {hi_f:.6g}] "
                f"in a tensor of shape {tuple(x.shape)}; pass clip=True to clamp, or "
                "colorfid.color.to_float() for integer images"
            )
    if clip and (lo_f < 0.0 or hi_f > 1.0):
        x = x.clamp(0.0, 1.0)
    return x


def _validate_srgb(x: Tensor, dim: int, clip: bool, check: bool, name: str) -> Tensor:
    if check:
        return check_srgb(x, dim=dim, clip=clip, name=name)
    return x


# ----------------------------------------------------------------------------------------------
# Guarded elementary functions (finite gradients at their singular points)
# ----------------------------------------------------------------------------------------------


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` for x > 0 and 0 where x <= 0, with gradient 0 (not NaN/Inf) where x <= 0.

    "Double where": the square root's argument is replaced by 1 where x <= 0 (and the result
    multiplied by 0 there), so the unused branch never produces an infinite derivative that
    ``0 * inf`` would turn into NaN. NaN stays NaN (bad values are never hidden); +Inf gives
    +Inf without a gradient and NaN with one.
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return torch.sqrt(x.clamp_min(0.0))  # no gradient to guard
    pos = above(x)
    return torch.sqrt(where(pos, x, torch.ones_like(x))) * pos


def safe_hypot(a: Tensor, b: Tensor) -> Tensor:
    """``sqrt(a² + b²)`` with gradient 0 at a = b = 0 (the chroma of a neutral colour)."""
    return safe_sqrt(a * a + b * b)


def safe_atan2(y: Tensor, x: Tensor) -> Tensor:
    """``atan2(y, x)`` in radians, (-pi, pi]; 0 with zero gradient at x = y = 0 (finite inputs)."""
    nz = nonzero(x.abs() + y.abs())
    # At the origin atan2(0, 1) = 0, with a finite derivative that the selector zeroes.
    return torch.atan2(y * nz, where(nz, x, torch.ones_like(x)))


_CONSTS: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}


def _const(name: str, values: list, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A constant tensor (matrix, white, table) on ``device`` in ``dtype``, made once per key.

    Not cached while tracing (``torch.export`` of the fused kernels, ``torch.compile``): a tensor
    made then is a tracer's stand-in, which eager calls after the trace must never receive."""
    key = (name, dtype, device)
    t = _CONSTS.get(key)
    if t is None:
        t = torch.tensor(values, dtype=torch.float64).to(device=device, dtype=dtype)
        if not is_compiling():
            _CONSTS[key] = t
    return t


def _apply_matrix(x: Tensor, m: list[list[float]], d: int) -> Tensor:
    """Multiply the 3-vectors along dim ``d`` by a 3x3 matrix.

    A (3, N) block (the chunks of :func:`_pixelwise`) goes through one ``mm`` (faster than
    nine scalar multiply-adds); other layouts use the multiply-adds, with the matrix kept in Python
    floats (no dtype/device traffic). Both are the same sums of three products.
    """
    if x.dim() == 2 and d == 0:
        return torch.mm(_const(f"m{id(m)}", m, x.dtype, x.device), x)
    if x.dim() == 2 and d == 1:  # pixel-major (N, 3)
        return torch.mm(x, _const(f"m{id(m)}T", [list(r) for r in zip(*m)], x.dtype, x.device))
    c0, c1, c2 = x.unbind(d)
    rows = [m[i][0] * c0 + m[i][1] * c1 + m[i][2] * c2 for i in range(3)]
    return torch.stack(rows, dim=d)


# ----------------------------------------------------------------------------------------------
# sRGB transfer function
# ----------------------------------------------------------------------------------------------


def _decode(x: Tensor) -> Tensor:
    # The power branch sees max(x, threshold): finite, with zero derivative where it is not taken.
    t = _SRGB_DECODE_THRESHOLD
    return where(above(x, t), ((x.clamp_min(t) + 0.055) / 1.055) ** 2.4, x / 12.92)


def _encode(x: Tensor) -> Tensor:
    t = _SRGB_ENCODE_THRESHOLD
    return where(above(x, t), 1.055 * x.clamp_min(t) ** (1.0 / 2.4) - 0.055, 12.92 * x)


def srgb_to_linear(x: Tensor, *, dim: int = -3, clip: bool = False, check: bool = True) -> Tensor:
    """Decode sRGB (IEC 61966-2-1) to linear RGB.

    ``x / 12.92`` for x <= 0.04045, else ``((x + 0.055) / 1.055) ** 2.4`` — the standard's
    threshold (colour-science switches at 0.0404499, where the two segments meet; the values
    differ only inside that 5e-8-wide interval, which no 8- or 16-bit code falls in). Input range [0, 1]
    (checked unless ``check=False``; ``clip=True`` clamps instead of raising). With
    ``check=False`` values outside [0, 1] follow the curve's natural extension (linear below 0,
    power above 1), which is what losses on unconstrained network outputs want.
    """
    x, d, dtype = _prepare(x, dim, "srgb_to_linear")
    x = _validate_srgb(x, d, clip, check, "srgb_to_linear")
    return finish(_decode(x), dtype)


def linear_to_srgb(x: Tensor, *, dim: int = -3) -> Tensor:
    """Encode linear RGB to sRGB (IEC 61966-2-1): ``12.92 x`` for x <= 0.0031308, else
    ``1.055 x^(1/2.4) - 0.055``. No range check or clipping (out-of-gamut values pass through)."""
    x, d, dtype = _prepare(x, dim, "linear_to_srgb")
    return finish(_encode(x), dtype)


# ----------------------------------------------------------------------------------------------
# XYZ and CIELAB
# ----------------------------------------------------------------------------------------------


def linear_rgb_to_xyz(x: Tensor, *, dim: int = -3) -> Tensor:
    """Linear sRGB -> CIE XYZ (D65, Y of white = 1) with :data:`SRGB_TO_XYZ`."""
    x, d, dtype = _prepare(x, dim, "linear_rgb_to_xyz")
    return finish(_apply_matrix(x, _M_RGB2XYZ, d), dtype)


def xyz_to_linear_rgb(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIE XYZ (D65, Y of white = 1) -> linear sRGB with :data:`XYZ_TO_SRGB` (no clipping)."""
    x, d, dtype = _prepare(x, dim, "xyz_to_linear_rgb")
    return finish(_apply_matrix(x, _M_XYZ2RGB, d), dtype)


def _lab_f(t: Tensor) -> Tensor:
    # CIE 015:2018 eq. 8.4: t^(1/3) above epsilon, (kappa t + 16) / 116 below. That segment is the
    # tangent of t^(1/3) at epsilon (slope kappa / 116 = (1/3) epsilon^(-2/3) = 841/108 exactly), so
    # f = max(t, eps)^(1/3) - (kappa / 116) max(eps - t, 0): t^(1/3) itself above epsilon, the
    # segment (to rounding) below, no selection needed; relu's zero derivative at 0 keeps the
    # gradient at t = eps single.
    return torch.add(t.clamp_min(_LAB_EPS) ** (1.0 / 3.0), torch.relu(_LAB_EPS - t), alpha=-_LAB_KAPPA / 116.0)


def _lab_f_inv(f: Tensor) -> Tensor:
    return where(above(f, _LAB_DELTA), f * f * f, (116.0 * f - 16.0) / _LAB_KAPPA)


def _ratios_to_lab(r: Tensor, d: int, out: Tensor | None = None) -> Tensor:
    """CIELAB from (X/Xn, Y/Yn, Z/Zn) along dim d (f of the three channels in one pass), into
    ``out`` when given."""
    fx, fy, fz = _lab_f(r).unbind(d)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=d, out=out)


def _xyz_to_lab(x: Tensor, d: int) -> Tensor:
    shape = [1] * x.dim()
    shape[d] = 3
    return _ratios_to_lab(x / _const("white", _WHITE, x.dtype, x.device).view(shape), d)


def _lab_to_xyz(x: Tensor, d: int) -> Tensor:
    L, a, b = x.unbind(d)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0
    return torch.stack(
        [_WHITE[0] * _lab_f_inv(fx), _WHITE[1] * _lab_f_inv(fy), _WHITE[2] * _lab_f_inv(fz)], dim=d
    )


def xyz_to_lab(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIE XYZ (Y of white = 1) -> CIELAB (D65 white :data:`D65_XYZ`), CIE 015:2018 §8.2.1."""
    x, d, dtype = _prepare(x, dim, "xyz_to_lab")
    return finish(_xyz_to_lab(x, d), dtype)


def lab_to_xyz(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIELAB (D65) -> CIE XYZ (Y of white = 1), the exact inverse of :func:`xyz_to_lab`."""
    x, d, dtype = _prepare(x, dim, "lab_to_xyz")
    return finish(_lab_to_xyz(x, d), dtype)


def _pixelwise(fn: Callable[[Tensor, int], Tensor], x: Tensor, d: int) -> Tensor:
    """Apply a per-pixel map ``fn(t, channel_dim)`` (3 channels in, 3 out), in cache-sized chunks
    when no gradient is needed. The values equal one call on the whole tensor to rounding (chunks
    apply the 3x3 matrices with ``mm``)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return fn(x, d)
    lead = int(math.prod(x.shape[:d]))
    flat = x.reshape(lead, 3, -1)
    step = chunk_pixels(x.device)
    if lead == 1 and flat.shape[-1] <= step:
        return fn(flat[0], 0).reshape(x.shape)
    out = torch.empty_like(flat)
    with torch.no_grad():
        for i in range(lead):
            for s in range(0, flat.shape[-1], step):
                out[i, :, s : s + step] = fn(flat[i, :, s : s + step], 0)
    return out.reshape(x.shape)


def _linear_to_lab(x: Tensor, d: int, out: Tensor | None = None) -> Tensor:
    # The white is folded into the matrix: its rows divided by (Xn, Yn, Zn) give X/Xn, Y/Yn, Z/Zn.
    return _ratios_to_lab(_apply_matrix(x, _M_RGB2XYZ_N, d), d, out)


def _srgb_to_lab(x: Tensor, d: int) -> Tensor:
    return _linear_to_lab(_decode(x), d)


def _lab_to_srgb(x: Tensor, d: int) -> Tensor:
    return _encode(_apply_matrix(_lab_to_xyz(x, d), _M_XYZ2RGB, d))


def srgb_to_lab(x: Tensor, *, dim: int = -3, clip: bool = False, check: bool = True) -> Tensor:
    """Encoded sRGB in [0, 1] -> CIELAB (D65/2°): decode, :data:`SRGB_TO_XYZ`, CIE 1976 L*a*b*.

    Matches ``colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x))`` to <= 1e-10 in float64. Range checking
    as in :func:`srgb_to_linear` (``check=False`` for unconstrained network outputs).
    """
    x, d, dtype = _prepare(x, dim, "srgb_to_lab")
    x = _validate_srgb(x, d, clip, check, "srgb_to_lab")
    return finish(_pixelwise(_srgb_to_lab, x, d), dtype)


def srgb_uint8_to_lab(image: Tensor, *, dim: int = -3, dtype: torch.dtype = torch.float32) -> Tensor:
    """8-bit sRGB codes (``uint8``, 0-255) -> CIELAB in ``dtype``: the explicit integer path.

    The same conversion as ``srgb_to_lab(to_float(image, dtype))``, faster: the sRGB decode of
    the 256 codes is a table (IEC 61966-2-1 of k/255, evaluated in float64 and rounded once to
    ``dtype``), looked up per pixel, then :data:`SRGB_TO_XYZ` and CIELAB as in
    :func:`srgb_to_lab`, in cache-sized chunks straight from the integer image: an ``(H, W, 3)``
    array viewed as ``(3, H, W)`` (``torch.from_numpy(a).permute(2, 0, 1)``) is read in place.
    The result is a contiguous tensor of the image's shape. In float64 the values equal
    ``srgb_to_lab(to_float(image, torch.float64))`` to ~1e-13; in float32 they are closer
    to float64 than the float path (the decode is not rounded twice). Not differentiable (integer
    input). Channel dimension ``dim`` (3 channels); the result has the image's shape.
    """
    if not isinstance(image, Tensor):
        raise DTypeError(f"srgb_uint8_to_lab: expected a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise DTypeError(
            f"srgb_uint8_to_lab: expected a uint8 tensor, got {image.dtype} (float images: srgb_to_lab; "
            "uint16: srgb_to_lab(to_float(x)))"
        )
    if not (dtype.is_floating_point and dtype not in REDUCED):
        raise DTypeError(f"srgb_uint8_to_lab: dtype must be float32 or float64, got {dtype}")
    d = channel_dim(image, dim, "srgb_uint8_to_lab")
    _heap.warm()
    table = _const("srgb8", _decode(torch.arange(256, dtype=torch.float64) / 255.0).tolist(), dtype, image.device)
    n_lead, n_pix = math.prod(image.shape[:d]), math.prod(image.shape[d + 1 :])
    out = torch.empty(image.shape, dtype=dtype, device=image.device)  # contiguous
    # Blocks of (codes, destination, codes pixel-major?, destination pixel-major?); every chunk is
    # computed channel-first, (3, m), where the matrix is one fast ``mm``.
    if n_pix == 1:  # channels last, (..., 3)
        blocks = [(image.reshape(-1, 3), out.view(-1, 3), True, True)]
    else:
        dst = out.view(n_lead, 3, n_pix)
        src, pixel_major = layout(image, d)  # an (H, W, 3) array seen as (3, H, W): read in place
        blocks = [(src[i], dst[i], pixel_major, False) for i in range(n_lead)]
    table_np = table.numpy() if image.device.type == "cpu" and _NUMPY_TAKE else None
    for codes, target, pm_in, pm_out in blocks:
        n = codes.shape[0] if pm_in else codes.shape[1]
        for s in range(0, n, CHUNK):
            m = min(CHUNK, n - s)
            c = codes[s : s + m].t() if pm_in else codes[:, s : s + m]  # (3, m), any strides
            if table_np is not None:
                # numpy's take reads the (3, m) view in place and writes it channel-first: the
                # de-interleave and the lookup in one pass (2x torch's two index_selects on CPU)
                lin = torch.from_numpy(np.take(table_np, c.numpy()))
            else:
                if pm_in:  # de-interleave r g b r g b ... -> r.. g.. b.. (a gather, not a transposing copy)
                    cf = codes[s : s + m].reshape(-1).index_select(0, deinterleave_index(m, image.device))
                else:
                    cf = c.reshape(-1)
                lin = table.index_select(0, cf.to(torch.int32)).view(3, m)
            if pm_out:
                target[s : s + m].copy_(_linear_to_lab(lin, 0).t())
            else:
                _linear_to_lab(lin, 0, out=target[:, s : s + m])
    return out


#: CPU lookups of srgb_uint8_to_lab through numpy's take (False: the torch gathers other devices use).
_NUMPY_TAKE = True


def lab_to_srgb(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIELAB (D65) -> encoded sRGB. Out-of-gamut colours come back outside [0, 1] (no clipping)."""
    x, d, dtype = _prepare(x, dim, "lab_to_srgb")
    return finish(_pixelwise(_lab_to_srgb, x, d), dtype)


# ----------------------------------------------------------------------------------------------
# Cylindrical coordinates
# ----------------------------------------------------------------------------------------------

_RAD2DEG = 180.0 / math.pi
_DEG2RAD = math.pi / 180.0


def _hue_degrees(y: Tensor, x: Tensor) -> Tensor:
    """Hue angle of (x, y) in degrees in [0, 360); 0 (zero gradient) at the origin."""
    h = safe_atan2(y, x) * _RAD2DEG
    return h + 360.0 * below(h)


def lab_to_lch(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIELAB -> CIE LCh(ab): (L*, C*ab = sqrt(a² + b²), h_ab in degrees [0, 360)).

    At zero chroma h is defined as 0 and its gradient is 0 (CIE 015:2018 §8.2.2). Near it the
    hue's derivative grows as 57.3/C° per unit of a*/b* — a property of the angle, not of the
    code: finite in float32/float64, but beyond float16's range for near-neutral colours (greys
    have C* ~ 0.005 under the normative matrix). Losses should use chroma-weighted hue
    differences (as :mod:`colorfid.losses` does), whose gradient is bounded.
    """
    x, d, dtype = _prepare(x, dim, "lab_to_lch")
    L, a, b = x.unbind(d)
    return finish(torch.stack([L, safe_hypot(a, b), _hue_degrees(b, a)], dim=d), dtype)


def lch_to_lab(x: Tensor, *, dim: int = -3) -> Tensor:
    """CIE LCh(ab) with h in degrees -> CIELAB."""
    x, d, dtype = _prepare(x, dim, "lch_to_lab")
    L, C, h = x.unbind(d)
    hr = h * _DEG2RAD
    return finish(torch.stack([L, C * torch.cos(hr), C * torch.sin(hr)], dim=d), dtype)


def chroma(lab: Tensor, *, dim: int = -3) -> Tensor:
    """CIE chroma C*ab = sqrt(a*² + b*²) of a CIELAB tensor; channel dim removed; gradient 0 at C = 0."""
    lab, d, dtype = _prepare(lab, dim, "chroma")
    _, a, b = lab.unbind(d)
    return finish(safe_hypot(a, b), dtype)


# ----------------------------------------------------------------------------------------------
# YCbCr and HSV
# ----------------------------------------------------------------------------------------------

# ITU-R BT.601 "studio swing" for 8-bit video, applied to [0, 1] inputs and scaled back to [0, 1]:
# the coefficients of MATLAB's rgb2ycbcr and BasicSR's rgb2ycbcr_pt.
_YCBCR = (
    (65.481, 128.553, 24.966, 16.0),
    (-37.797, -74.203, 112.0, 128.0),
    (112.0, -93.786, -18.214, 128.0),
)


def srgb_to_ycbcr(x: Tensor, *, dim: int = -3, y_only: bool = False, check: bool = True) -> Tensor:
    """sRGB in [0, 1] -> YCbCr of ITU-R BT.601, studio range, scaled to [0, 1].

    ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255`` in [16/255, 235/255]; Cb, Cr in
    [16/255, 240/255], neutral at 128/255 — identical to BasicSR's ``rgb2ycbcr_pt`` (and so to
    the Y channel NAFNet/BasicSR report PSNR on). Applied to the encoded values, as BT.601 does.
    ``y_only=True`` returns Y with the channel dim kept (size 1).
    """
    x, d, dtype = _prepare(x, dim, "srgb_to_ycbcr")
    x = _validate_srgb(x, d, False, check, "srgb_to_ycbcr")
    r, g, b = x.unbind(d)
    rows = _YCBCR[:1] if y_only else _YCBCR
    out = [(k[0] * r + k[1] * g + k[2] * b + k[3]) / 255.0 for k in rows]
    return finish(torch.stack(out, dim=d), dtype)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, and 0 (zero gradient) where ``den == 0``; finite inputs."""
    nz = nonzero(den)
    return num / where(nz, den, torch.ones_like(den)) * nz


def hsv_saturation(x: Tensor, *, dim: int = -3, check: bool = True) -> Tensor:
    """HSV saturation S = (max - min) / max of sRGB values (Smith 1978); 0 at black. Channel dim removed."""
    x, d, dtype = _prepare(x, dim, "hsv_saturation")
    x = _validate_srgb(x, d, False, check, "hsv_saturation")
    mx = x.amax(dim=d)
    mn = x.amin(dim=d)
    return finish(_safe_div(mx - mn, mx), dtype)


def srgb_to_hsv(x: Tensor, *, dim: int = -3, check: bool = True) -> Tensor:
    """sRGB -> HSV (Smith 1978) on the encoded values: H in degrees [0, 360), S and V in [0, 1].

    V = max(R, G, B), S = (V - min) / V (0 for black), H from the hexcone sector of the maximum
    (0 where V = min). Matches ``skimage.color.rgb2hsv`` (whose H is H/360).
    """
    x, d, dtype = _prepare(x, dim, "srgb_to_hsv")
    x = _validate_srgb(x, d, False, check, "srgb_to_hsv")
    r, g, b = x.unbind(d)
    v, arg = x.max(dim=d)
    mn = x.amin(dim=d)
    delta = v - mn
    s = _safe_div(delta, v)
    hr = _safe_div(g - b, delta)
    hg = _safe_div(b - r, delta) + 2.0
    hb = _safe_div(r - g, delta) + 4.0
    h = torch.where(arg == 0, hr, torch.where(arg == 1, hg, hb)) * 60.0
    h = torch.remainder(h, 360.0)
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    return finish(torch.stack([h, s, v], dim=d), dtype)

