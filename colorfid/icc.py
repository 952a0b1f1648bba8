"""ICC profiles -> sRGB for :mod:`colorfid.io`: LittleCMS (Pillow's ImageCms, relative
colorimetric) for 8-bit images, and a float64 matrix/TRC path for 16-bit ones (ICC.1:2010 10.6
'curv' and 10.18 'para' tone curves, the profile's colorants -> XYZ (D50) -> sRGB), which keeps
16-bit precision that an 8-bit LittleCMS transform would lose."""

from __future__ import annotations

import re
import struct

import numpy as np
import torch
from PIL import Image, ImageCms

from .color import linear_to_srgb

__all__ = ["SRGB_PROFILE", "profile_description", "is_srgb", "eval_trc", "matrix_shaper", "float_icc_to_srgb",
           "cms_to_srgb"]


def profile_description(profile: ImageCms.ImageCmsProfile) -> str:
    desc = (profile.profile.profile_description or "").strip()
    return desc or "(no description)"


def is_srgb(description: str) -> bool:
    return bool(re.search(r"(?<![\w-])sRGB(?![\w-])", description)) or "61966-2" in description


SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


# -- ICC: the float path for 16-bit images with matrix/TRC profiles ---------------------------


def _icc_tags(data: bytes) -> dict[bytes, bytes]:
    (count,) = struct.unpack(">I", data[128:132])
    tags = {}
    for i in range(count):
        sig, off, size = struct.unpack(">4sII", data[132 + 12 * i : 144 + 12 * i])
        tags[sig] = data[off : off + size]
    return tags


def _s15(b: bytes) -> float:
    return struct.unpack(">i", b)[0] / 65536.0


def eval_trc(tag: bytes, x: np.ndarray) -> np.ndarray:
    """Evaluate an ICC 'curv' or 'para' tone curve (ICC.1:2010 10.6 and 10.18) on x in [0, 1]."""
    kind = tag[:4]
    if kind == b"curv":
        (n,) = struct.unpack(">I", tag[8:12])
        if n == 0:
            return x
        if n == 1:
            return np.power(x, struct.unpack(">H", tag[12:14])[0] / 256.0)
        table = np.frombuffer(tag[12 : 12 + 2 * n], dtype=">u2").astype(np.float64) / 65535.0
        return np.interp(x, np.linspace(0.0, 1.0, n), table)
    if kind == b"para":
        (ftype,) = struct.unpack(">H", tag[8:10])
        nparams = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if nparams is None:
            raise ValueError(f"unknown parametric curve type {ftype}")
        p = [_s15(tag[12 + 4 * i : 16 + 4 * i]) for i in range(nparams)] + [0.0] * (7 - nparams)
        g, a, b, c, d, e, f = p
        if ftype == 0:
            return np.power(x, g)
        if ftype == 1:
            return np.where(x >= -b / a, np.power(np.clip(a * x + b, 0, None), g), 0.0)
        if ftype == 2:
            return np.where(x >= -b / a, np.power(np.clip(a * x + b, 0, None), g) + c, c)
        if ftype == 3:
            return np.where(x >= d, np.power(np.clip(a * x + b, 0, None), g), c * x)
        return np.where(x >= d, np.power(np.clip(a * x + b, 0, None), g) + e, c * x + f)
    raise ValueError(f"unsupported tone curve type {kind!r}")


def matrix_shaper(profile: ImageCms.ImageCmsProfile, icc: bytes) -> tuple[np.ndarray, list[bytes]] | None:
    """(3x3 RGB->XYZ(D50) matrix, [rTRC, gTRC, bTRC]) of an RGB matrix/TRC profile, else None."""
    prof = profile.profile
    if prof.xcolor_space.strip() != "RGB" or not prof.is_matrix_shaper:
        return None
    try:
        tags = _icc_tags(icc)
        trcs = [tags[b"rTRC"], tags[b"gTRC"], tags[b"bTRC"]]
        for t in trcs:
            eval_trc(t, np.zeros(1))
    except (KeyError, ValueError, struct.error):
        return None
    cols = [prof.red_colorant, prof.green_colorant, prof.blue_colorant]
    if any(c is None for c in cols):
        return None
    m = np.array([c[0] for c in cols], dtype=np.float64).T  # columns = colorants
    return m, trcs


def _srgb_from_xyz_d50() -> np.ndarray:
    prof = SRGB_PROFILE.profile
    m = np.array([c[0] for c in (prof.red_colorant, prof.green_colorant, prof.blue_colorant)]).T
    return np.linalg.inv(m)


def float_icc_to_srgb(rgb: np.ndarray, shaper: tuple[np.ndarray, list[bytes]]) -> np.ndarray:
    """(H, W, 3) float64 in the profile's RGB -> sRGB-encoded float in [0, 1]."""
    m, trcs = shaper
    lin = np.stack([eval_trc(trcs[i], rgb[..., i]) for i in range(3)], axis=-1)
    xyz = lin @ m.T
    srgb_lin = np.clip(xyz @ _srgb_from_xyz_d50().T, 0.0, 1.0)
    enc = linear_to_srgb(torch.from_numpy(np.ascontiguousarray(srgb_lin)), dim=-1).numpy()
    return np.clip(enc, 0.0, 1.0)


def cms_to_srgb(im: Image.Image, profile: ImageCms.ImageCmsProfile) -> Image.Image:
    """Convert a Pillow image in ``profile`` to sRGB "RGB" with LittleCMS (relative colorimetric)."""
    return ImageCms.profileToProfile(
        im,
        profile,
        SRGB_PROFILE,
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
