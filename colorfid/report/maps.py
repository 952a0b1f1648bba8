"""The three maps of an image pair (ΔE2000, hue shift, saturation ratio) on fixed scales, their
colour maps, and the encoding of images as ``data:`` URIs.

* ΔE2000: :func:`colorfid.difference.delta_e_2000` of :func:`colorfid.color.srgb_to_lab`
  (CIEDE2000, Sharma, Wu & Dalal 2005) on :data:`DE00_SCALE` (values above saturate).
* Hue shift: :func:`colorfid.metrics.hue_angle_delta` (output - GT, degrees in (-180, 180]) where
  the GT's C*ab >= the protocol's ``hue_chroma_floor``; :data:`HUE_SCALE`.
* Saturation ratio: S_out / S_gt (HSV, Smith 1978) where S_gt >= :data:`SAT_MAP_MIN_GT`, on the
  logarithmic :data:`SAT_SCALE`.

Colour maps: "inferno" (van der Walt & Smith, matplotlib 2015) for ΔE; ColorBrewer RdBu (hue:
blue negative, red positive) and BrBG (saturation: brown washed out, teal over-saturated),
both colour-blind safe (Brewer, colorbrewer2.org); anchors in sRGB hex, linearly interpolated.
"""

from __future__ import annotations

import base64
import io as _bytesio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DE00_SCALE", "HUE_SCALE", "SAT_SCALE", "SAT_MAP_MIN_GT", "CMAPS", "Maps", "compute_maps", "to_uint8",
           "downscale", "data_uri"]

#: Fixed scale of the ΔE2000 heatmap, in ΔE00 units (>= 20 saturates). ~1 is "just noticeable",
#: 2-10 "perceptible at a glance", > 10 "a different colour".
DE00_SCALE: tuple[float, float] = (0.0, 20.0)


#: Fixed scale of the hue-shift map, degrees (output minus GT; beyond +-30 saturates).
HUE_SCALE: tuple[float, float] = (-30.0, 30.0)


#: Fixed scale of the saturation-ratio map, S_out / S_gt, drawn on a log2 axis (x0.5 .. x2).
SAT_SCALE: tuple[float, float] = (0.5, 2.0)


#: The saturation-ratio map is drawn where the GT's HSV saturation is at least this.
SAT_MAP_MIN_GT: float = 0.10


#: The maps are computed in row blocks of about this many pixels (memory stays bounded).
_MAP_CHUNK_PIXELS = 1 << 20


CMAPS: dict[str, tuple[str, ...]] = {
    "inferno": ("#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"),
    "rdbu": ("#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"),
    "brbg": ("#8c510a", "#d8b365", "#f6e8c3", "#f5f5f5", "#c7eae5", "#5ab4ac", "#01665e"),
}


def _hex_rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def _lut(name: str) -> np.ndarray:
    """256 x 3 uint8 table interpolated linearly (in encoded sRGB) between the map's anchors."""
    anchors = np.array([_hex_rgb(h) for h in CMAPS[name]], dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _apply_cmap(u: np.ndarray, name: str) -> np.ndarray:
    """u in [0, 1] (H, W) -> (H, W, 3) uint8 through the named colour map (NaN -> 0)."""
    idx = np.nan_to_num(np.clip(u, 0.0, 1.0) * 255.0, nan=0.0).round().astype(np.intp)
    return _lut(name)[idx]


def to_uint8(t: Any) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8."""
    a = t.detach().to("cpu").float().clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return (a * 255.0 + 0.5).astype(np.uint8)


def _context_grey(L: np.ndarray) -> np.ndarray:
    """Darkened grey of the GT's lightness, drawn where a map is undefined (outside its mask)."""
    g = (40.0 + 0.9 * np.clip(L, 0.0, 100.0)).astype(np.uint8)  # 40..130 of 255: clearly "off"
    return np.repeat(g[..., None], 3, axis=-1)


@dataclass
class Maps:
    de00: np.ndarray
    hue: np.ndarray
    sat: np.ndarray
    hue_pixels: int
    sat_pixels: int
    de00_max: float


def compute_maps(pred: Any, gt: Any, hue_floor: float) -> Maps:
    """The three maps of one image pair, as RGB uint8 arrays at full resolution."""
    import torch  # noqa: PLC0415

    from .. import color, difference, metrics  # noqa: PLC0415
    from .._threads import limited as limited_threads  # noqa: PLC0415

    pred = pred.float().clamp(0.0, 1.0)
    gt = gt.float().clamp(0.0, 1.0)
    h, w = gt.shape[-2:]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("de", "L", "C", "dh", "sp", "sg")}
    rows = max(1, _MAP_CHUNK_PIXELS // max(1, w))  # bounded memory on large images; exact
    with torch.no_grad(), limited_threads(h * w):
        for y0 in range(0, h, rows):
            p, g = pred[:, y0 : y0 + rows], gt[:, y0 : y0 + rows]
            lab_p, lab_g = color.srgb_to_lab(p), color.srgb_to_lab(g)
            lch_g = color.lab_to_lch(lab_g)
            parts["de"].append(difference.delta_e_2000(lab_p, lab_g).numpy())
            parts["L"].append(lch_g[0].numpy())
            parts["C"].append(lch_g[1].numpy())
            parts["dh"].append(metrics.hue_angle_delta(lab_p, lab_g).numpy())  # hue_shift's own Δh
            parts["sp"].append(color.hsv_saturation(p).numpy())
            parts["sg"].append(color.hsv_saturation(g).numpy())
    de, L_g, C_g, dh, s_p, s_g = (np.concatenate(parts[k], axis=0) for k in ("de", "L", "C", "dh", "sp", "sg"))

    lo, hi = DE00_SCALE
    de_rgb = _apply_cmap((de - lo) / (hi - lo), "inferno")

    grey = _context_grey(L_g)
    hue_mask = C_g >= hue_floor
    lo, hi = HUE_SCALE
    hue_rgb = np.where(hue_mask[..., None], _apply_cmap((dh - lo) / (hi - lo), "rdbu"), grey)

    sat_mask = s_g >= SAT_MAP_MIN_GT
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sat_mask, s_p / np.where(sat_mask, s_g, 1.0), 1.0)
        lr = np.log2(np.maximum(ratio, 1e-6))
    lo, hi = (math.log2(x) for x in SAT_SCALE)
    sat_rgb = np.where(sat_mask[..., None], _apply_cmap((lr - lo) / (hi - lo), "brbg"), grey)
    finite = de[np.isfinite(de)]
    return Maps(
        de_rgb, hue_rgb, sat_rgb, int(hue_mask.sum()), int(sat_mask.sum()), float(finite.max()) if finite.size else 0.0
    )


def downscale(a: np.ndarray, long_edge: int) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415

    h, w = a.shape[:2]
    if max(h, w) <= long_edge:
        return a
    im = Image.fromarray(a)
    im.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _few_colours(a: np.ndarray, limit: int = 2048) -> bool:
    """True when the image has at most ``limit`` distinct colours (sampled on every 2nd pixel):
    flat charts and colour-mapped maps, where a PNG can beat a JPEG."""
    s = a[::2, ::2].astype(np.uint32)
    packed = (s[..., 0] << 16) | (s[..., 1] << 8) | s[..., 2]
    return np.unique(packed).size <= limit


def data_uri(a: np.ndarray, long_edge: int, quality: int, *, sharp: bool = False) -> tuple[str, int, int]:
    """Encode (H, W, 3) uint8 after shrinking to ``long_edge``; return (data URI, width, height).

    JPEG at ``quality`` (4:4:4 chroma for ``sharp`` images such as the maps, whose colours carry
    values), or a PNG when the image has few colours and the PNG is smaller.
    """
    from PIL import Image  # noqa: PLC0415

    a = np.ascontiguousarray(downscale(a, long_edge))
    im = Image.fromarray(a)
    jpg = _bytesio.BytesIO()
    im.save(jpg, format="JPEG", quality=quality, optimize=True, progressive=True, subsampling=0 if sharp else 2)
    best, mime = jpg.getvalue(), "image/jpeg"
    if _few_colours(a):
        png = _bytesio.BytesIO()
        im.save(png, format="PNG", optimize=True)
        if len(png.getvalue()) < len(best):
            best, mime = png.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(best).decode('ascii')}", a.shape[1], a.shape[0]
