#!/usr/bin/env python
"""Build colorfid's bundled stress sets and training pairs, deterministically.

    python scripts/make_golden_data.py                 # everything into ./golden
    python scripts/make_golden_data.py --what stress   # only golden/stress/<set>/
    python scripts/make_golden_data.py --what train    # only golden/train/
    python scripts/make_golden_data.py --check         # rebuild in a temp dir, compare bytes

Dev-time script: it may use colour-science (ColorChecker spectra, illuminants, CMFs,
sRGB transfer function) and scikit-image (bundled photographs), which colorfid itself
never imports. Every random draw comes from ``numpy.random.default_rng`` seeded with a
``SeedSequence([base_seed, crc32(tag), index])``; running the script twice gives
byte-identical PNGs (8-bit, written by OpenCV with PNG compression level 9) on the same
numpy / OpenCV / colour-science versions.

Held-out split: the stress sets (base seed ``STRESS_SEED``) and the training pairs (base
seed ``TRAIN_SEED``) come from the same generators and the same degradation families,
but never share a scene, a chart, a photograph or a texture: see ``PHOTOS_GATE`` /
``PHOTOS_TRAIN`` and ``TEXTURES_GATE`` / ``TEXTURES_TRAIN``. golden/stress/README.md says
how each set was made.

Conventions: images are float64 arrays (H, W, 3), sRGB-encoded in [0, 1] unless a name
says ``lin`` (linear light, IEC 61966-2-1 sRGB primaries, D65 white).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

warnings.filterwarnings("ignore", module=r"colour(\..*)?")  # matplotlib-missing notices
import colour  # noqa: E402

STRESS_SEED = 20250101
TRAIN_SEED = 20250202
SCRIPT = "scripts/make_golden_data.py"

# ---------------------------------------------------------------------------------------
# colour helpers (colour-science is the reference here; colorfid.color is tested against it)
# ---------------------------------------------------------------------------------------

_M_XYZ_TO_SRGB = np.asarray(colour.RGB_COLOURSPACES["sRGB"].matrix_XYZ_to_RGB, dtype=np.float64)
_LUMA_601 = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights (on encoded values)


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded (IEC 61966-2-1), clipped to [0, 1] first."""
    return np.asarray(colour.cctf_encoding(np.clip(lin, 0.0, 1.0), function="sRGB"), dtype=np.float64)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded -> linear light (IEC 61966-2-1)."""
    return np.asarray(colour.cctf_decoding(np.clip(x, 0.0, 1.0), function="sRGB"), dtype=np.float64)


def hsv_to_srgb(h_deg: float, s: float, v: float) -> np.ndarray:
    """HSV (hue in degrees) -> sRGB-encoded triple (the encoded values are HSV's RGB)."""
    return np.asarray(colour.HSV_to_RGB([(h_deg % 360.0) / 360.0, s, v]), dtype=np.float64)


def hsv_saturation(x: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of sRGB-encoded (..., 3); 0 where max == 0."""
    mx, mn = x.max(-1), x.min(-1)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0)


def to_u8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 with round-half-to-even (numpy.rint)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def from_u8(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 255.0


def resize_area(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Down-scale with OpenCV's area interpolation (float64 in, float64 out)."""
    return cv2.resize(x.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)


def jpeg_roundtrip(u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as baseline JPEG (OpenCV / libjpeg, 4:2:0) and decode it."""
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def write_png(path: Path, u8: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), u8[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise RuntimeError(f"could not write {path}")


def rng_for(base_seed: int, tag: str, index: int) -> np.random.Generator:
    """An independent, reproducible generator per (base seed, tag, index)."""
    return np.random.default_rng(np.random.SeedSequence([base_seed, zlib.crc32(tag.encode()), index]))


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a (cells x cells) random grid, bicubic-upsampled."""
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    up = cv2.resize(grid, (w + 3 * w // cells, h + 3 * h // cells), interpolation=cv2.INTER_CUBIC)
    oy, ox = (up.shape[0] - h) // 2, (up.shape[1] - w) // 2
    return np.clip(up[oy : oy + h, ox : ox + w].astype(np.float64) / 1.5, -1.0, 1.0)


# ---------------------------------------------------------------------------------------
# The degradation family ("before" photo from an "after")
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Degradation:
    """Global photometric degradation, applied to an sRGB-encoded image ``x`` in [0, 1]:

    1. linear light: ``lin = decode(x) * exposure * wb``   (per-channel gains R, G, B)
    2. re-encode: ``y = encode(clip(lin, 0, 1))``
    3. contrast about a pivot: ``y = pivot + contrast * (y - pivot)``
    4. saturation, luma-preserving: ``y = Y + saturation * (y - Y)``,
       ``Y = 0.299 R + 0.587 G + 0.114 B`` (BT.601 luma of the encoded values)
    4b. chroma roll-off, luma-preserving: ``y = Y + (y - Y) / (1 + chroma_rolloff * n)``,
       ``n = |y - Y|`` (Euclidean norm over R, G, B): strongly coloured pixels lose more of their
       chroma than near-neutral ones, as a camera's tone/gamut compression does (0 = off).
       Inverse: ``y = Y + (y' - Y) / (1 - chroma_rolloff * n')``, ``n' = |y' - Y|``.
    5. sensor noise: ``y += N(0, noise_sigma^2)`` i.i.d. per pixel and channel (encoded units)
    6. clip to [0, 1], quantise to 8 bits (round half to even)
    7. optional JPEG round trip at ``jpeg_quality`` (OpenCV / libjpeg, 4:2:0 chroma)

    Steps 1-4b never clip when ``exposure * max(wb) <= 1`` (the convex combinations in 3-4b
    stay inside [0, 1]), so they are exactly invertible; 5-7 are not.
    """

    exposure: float
    wb: tuple[float, float, float]
    contrast: float
    saturation: float
    noise_sigma: float
    pivot: float = 0.5
    jpeg_quality: int | None = None
    chroma_rolloff: float = 0.0

    def photometric(self, x: np.ndarray) -> np.ndarray:
        """Steps 1-4b (deterministic, invertible)."""
        lin = srgb_decode(x) * self.exposure * np.asarray(self.wb)
        y = srgb_encode(lin)
        y = self.pivot + self.contrast * (y - self.pivot)
        luma = (y @ _LUMA_601)[..., None]
        y = luma + self.saturation * (y - luma)
        if self.chroma_rolloff:
            n = np.linalg.norm(y - luma, axis=-1, keepdims=True)
            y = luma + (y - luma) / (1.0 + self.chroma_rolloff * n)
        return y

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = self.photometric(x)
        y = y + rng.standard_normal(y.shape) * self.noise_sigma
        u8 = to_u8(y)
        if self.jpeg_quality is not None:
            u8 = jpeg_roundtrip(u8, self.jpeg_quality)
        return u8

    def as_toml(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "exposure": self.exposure,
            "wb": list(self.wb),
            "contrast": self.contrast,
            "pivot": self.pivot,
            "saturation": self.saturation,
            "noise_sigma": self.noise_sigma,
        }
        if self.chroma_rolloff:
            d["chroma_rolloff"] = self.chroma_rolloff
        if self.jpeg_quality is not None:
            d["jpeg_quality"] = self.jpeg_quality
        return d


#: Per-image degradations of the training rooms (uniform draws): the range a model learns to undo.
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "exposure": (0.60, 0.90),
    "wb_r": (1.00, 1.10),
    "wb_b": (0.85, 0.98),
    "contrast": (0.82, 0.95),
    "saturation": (0.72, 0.92),
    "noise_sigma": (0.004, 0.010),
    "chroma_rolloff": (0.0, 0.6),
}
#: Per-image degradations of the held-out ``saturated_paint`` rooms: the exposure and contrast
#: corrections a model must make lie at the strong end of TRAIN_RANGES or just past it (where the
#: real washout showed), and so does the warm cast it must neutralise on the near-neutral surfaces
#: (an under-neutralised cast raises their saturation, which is how a whole-image average hides
#: washed-out walls); saturation, chroma roll-off and noise are drawn from TRAIN_RANGES.
PAINT_RANGES: dict[str, tuple[float, float]] = {
    "exposure": (0.52, 0.64),
    "wb_r": (1.10, 1.16),
    "wb_b": (0.78, 0.85),
    "contrast": (0.76, 0.84),
    "saturation": (0.72, 0.92),
    "noise_sigma": (0.004, 0.010),
    "chroma_rolloff": (0.0, 0.6),
}
#: Painted share of the frame (HSV S >= 0.5 surfaces): training rooms that are painted at all,
#: and the held-out rooms (larger, still a minority, so a whole-image average can hide it).
PAINT_SHARE_TRAIN = (0.05, 0.15)
PAINT_SHARE_GATE = (0.15, 0.30)

#: Ranges of the per-image degradations of ``photos`` / ``neutral`` (uniform draws).
PHOTO_RANGES: dict[str, tuple[float, float]] = {
    "exposure": (0.55, 0.85),
    "wb_r": (1.00, 1.10),
    "wb_b": (0.84, 0.98),
    "contrast": (0.80, 0.92),
    "saturation": (0.75, 0.90),
    "noise_sigma": (0.004, 0.010),
    "jpeg_quality": (78, 92),
}
NEUTRAL_RANGES: dict[str, tuple[float, float]] = {
    "exposure": (0.60, 0.85),
    "wb_r": (1.03, 1.10),
    "wb_b": (0.84, 0.93),
    "contrast": (0.85, 0.92),
    "saturation": (0.80, 0.90),
    "noise_sigma": (0.004, 0.008),
}


def sample_degradation(rng: np.random.Generator, ranges: dict[str, tuple[float, float]]) -> Degradation:
    def u(key: str) -> float:
        lo, hi = ranges[key]
        return round(float(rng.uniform(lo, hi)), 4)

    jpeg = None
    if "jpeg_quality" in ranges:
        lo, hi = ranges["jpeg_quality"]
        jpeg = int(rng.integers(int(lo), int(hi) + 1))
    return Degradation(
        exposure=u("exposure"),
        wb=(u("wb_r"), 1.0, u("wb_b")),
        contrast=u("contrast"),
        saturation=u("saturation"),
        noise_sigma=u("noise_sigma"),
        jpeg_quality=jpeg,
        chroma_rolloff=u("chroma_rolloff") if "chroma_rolloff" in ranges else 0.0,
    )


# ---------------------------------------------------------------------------------------
# colorchecker: spectral rendering
# ---------------------------------------------------------------------------------------

SHAPE = colour.SpectralShape(380, 780, 5)
CHECKER = "ColorChecker N Ohta"
CHART_SURROUND_REFLECTANCE = 0.04  # the chart's black frame, spectrally flat


def _aligned(sd: Any) -> np.ndarray:
    return np.asarray(sd.copy().align(SHAPE).values, dtype=np.float64)


def checker_reflectances() -> tuple[list[str], np.ndarray]:
    """The 24 ColorChecker reflectances (colour-science's ``CHECKER``), shape (24, n_lambda)."""
    sds = colour.SDS_COLOURCHECKERS[CHECKER]
    names = list(sds.keys())
    return names, np.stack([_aligned(sds[n]) for n in names])


def _cmfs() -> np.ndarray:
    return np.asarray(
        colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"].copy().align(SHAPE).values, dtype=np.float64
    )


def render_reflectances(refl: np.ndarray, illuminant: str) -> np.ndarray:
    """Linear sRGB of reflectances under ``illuminant``, no white balance, no adaptation.

    ``XYZ = sum(R S cmf) / sum(S ybar)`` (CIE 15, 5 nm sums, CIE 1931 2° observer) is
    mapped with the sRGB XYZ->RGB matrix (D65 white): a non-D65 light leaves a colour
    cast. The result is scaled so the brightest channel of a perfect white is 1.
    """
    S = _aligned(colour.SDS_ILLUMINANTS[illuminant])
    cmf = _cmfs()
    k = 1.0 / np.sum(S * cmf[:, 1])
    xyz = k * (refl * S) @ cmf
    rgb = xyz @ _M_XYZ_TO_SRGB.T
    white = (k * S @ cmf) @ _M_XYZ_TO_SRGB.T
    return rgb / np.max(white)


def chart_image(
    patch_lin: np.ndarray,
    surround_lin: np.ndarray,
    rows: int,
    cols: int,
    patch: int,
    gap: int,
    margin: tuple[int, int],
) -> np.ndarray:
    """Lay patches (rows*cols, 3) out row-major on the surround colour; linear light."""
    h = rows * patch + (rows - 1) * gap + 2 * margin[0]
    w = cols * patch + (cols - 1) * gap + 2 * margin[1]
    img = np.empty((h, w, 3))
    img[:] = surround_lin
    for i, c in enumerate(patch_lin):
        r, q = divmod(i, cols)
        y0 = margin[0] + r * (patch + gap)
        x0 = margin[1] + q * (patch + gap)
        img[y0 : y0 + patch, x0 : x0 + patch] = c
    return img


def illumination_gradient(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """Multiplicative linear ramp 1 + strength * (p . d) across the image, d a random unit
    direction, p in [-1, 1]^2; used on charts' LQ (mild uneven lighting)."""
    a = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    p = (np.cos(a) * (2 * xx / (w - 1) - 1) + np.sin(a) * (2 * yy / (h - 1) - 1)) / np.sqrt(2.0)
    return (1.0 + strength * p)[..., None]


@dataclass(frozen=True)
class ChartShot:
    name: str
    illuminant: str
    exposure: float


CHART_SHOTS_GATE = [
    ChartShot("A_tungsten", "A", 1.00),
    ChartShot("A_tungsten_under", "A", 0.45),
    ChartShot("FL2_fluorescent", "FL2", 1.00),
    ChartShot("FL2_fluorescent_under", "FL2", 0.50),
    ChartShot("FL11_triphosphor", "FL11", 0.90),
    ChartShot("LED-B3_led", "LED-B3", 0.90),
    ChartShot("D50_under", "D50", 0.50),
    ChartShot("D65_under", "D65", 0.35),
]
CHART_ILLUMINANTS_TRAIN = ["A", "FL2", "FL11", "LED-B3", "D50", "D65", "FL7", "LED-B1", "FL4", "D75"]
CHART_LQ_NOISE = 0.006
CHART_LQ_GRADIENT = 0.08
CHART_GATE_GEOMETRY = dict(rows=4, cols=6, patch=40, gap=6, margin=(7, 9))  # 288 x 192 px


def chart_pair(
    refl: np.ndarray,
    illuminant: str,
    exposure: float,
    rng: np.random.Generator,
    rows: int,
    cols: int,
    patch: int,
    gap: int,
    margin: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(GT, LQ) uint8 of one chart: GT under D65 (exposure 1), LQ under ``illuminant`` at
    ``exposure`` times an illumination gradient, plus noise."""
    surround = np.full((1, refl.shape[1]), CHART_SURROUND_REFLECTANCE)
    gt_p = render_reflectances(refl, "D65")
    gt_s = render_reflectances(surround, "D65")[0]
    lq_p = render_reflectances(refl, illuminant) * exposure
    lq_s = render_reflectances(surround, illuminant)[0] * exposure
    gt = srgb_encode(chart_image(gt_p, gt_s, rows, cols, patch, gap, margin))
    lq_lin = chart_image(lq_p, lq_s, rows, cols, patch, gap, margin)
    lq_lin = lq_lin * illumination_gradient(rng, *lq_lin.shape[:2], CHART_LQ_GRADIENT)
    lq = srgb_encode(lq_lin) + rng.standard_normal(lq_lin.shape) * CHART_LQ_NOISE
    return to_u8(gt), to_u8(lq)


def random_chart_reflectances(rng: np.random.Generator, n: int) -> np.ndarray:
    """Training charts: each patch mixes two different ColorChecker reflectances with a
    weight in [0.2, 0.8] (never a pure gate patch), times a lightness factor in [0.5, 1]."""
    _, base = checker_reflectances()
    out = []
    for _ in range(n):
        i, j = rng.choice(len(base), size=2, replace=False)
        w = rng.uniform(0.2, 0.8)
        out.append((w * base[i] + (1 - w) * base[j]) * rng.uniform(0.5, 1.0))
    return np.stack(out)


# ---------------------------------------------------------------------------------------
# interiors: saturated_paint and neutral
# ---------------------------------------------------------------------------------------

HUE_FAMILIES: dict[str, tuple[float, float]] = {  # HSV hue ranges, degrees
    "red": (-6.0, 6.0),
    "orange": (20.0, 30.0),
    "yellow": (46.0, 54.0),
    "green": (100.0, 135.0),
    "teal": (168.0, 184.0),
    "blue": (205.0, 228.0),
    "purple": (262.0, 282.0),
    "magenta": (310.0, 328.0),
}
PAINT_PRIMARY_GATE = ["blue", "green", "teal", "red", "yellow", "blue", "teal", "green", "red", "yellow"]


def paint_colour(rng: np.random.Generator, family: str) -> np.ndarray:
    """A strongly saturated paint (sRGB-encoded): HSV S in [0.70, 0.95], V in [0.70, 0.92]."""
    lo, hi = HUE_FAMILIES[family]
    return hsv_to_srgb(rng.uniform(lo, hi), rng.uniform(0.70, 0.95), rng.uniform(0.70, 0.92))


def neutral_colour(rng: np.random.Generator, v: tuple[float, float] = (0.45, 0.92)) -> np.ndarray:
    """A low-chroma surface (sRGB-encoded): HSV S <= 0.06, warm or cool."""
    return hsv_to_srgb(rng.choice([30.0, 40.0, 210.0, 0.0]), rng.uniform(0.0, 0.06), rng.uniform(*v))


def interior_wall_colour(rng: np.random.Generator) -> np.ndarray:
    """Walls of a lived-in interior: off-white, greige or pale warm (HSV S <= 0.14, V 0.72-0.93)."""
    if rng.uniform() < 0.6:
        return neutral_colour(rng, (0.78, 0.93))
    return hsv_to_srgb(rng.uniform(25.0, 48.0), rng.uniform(0.06, 0.14), rng.uniform(0.72, 0.9))


def interior_furnishing_colour(rng: np.random.Generator) -> np.ndarray:
    """Furniture, rugs and doors: wood (S 0.3-0.46, hue 18-38), muted fabric (S 0.12-0.4, any
    hue) or neutral; never a saturated paint (HSV S < 0.5, so the high-chroma mask of the
    metrics finds the painted surfaces only)."""
    k = rng.uniform()
    if k < 0.4:
        return hsv_to_srgb(rng.uniform(18.0, 38.0), rng.uniform(0.30, 0.46), rng.uniform(0.35, 0.7))
    if k < 0.75:
        return hsv_to_srgb(rng.uniform(0.0, 360.0), rng.uniform(0.12, 0.4), rng.uniform(0.4, 0.85))
    return neutral_colour(rng, (0.3, 0.85))


def _paint_surfaces(rng: np.random.Generator, albedo: np.ndarray, region: np.ndarray,
                    share: tuple[float, float], primary: str | None) -> float:
    """Repaint whole surfaces (walls, the accent panel, furniture) in saturated paints until the
    painted share of the frame lies in ``share`` = (lo, hi); return that share.

    Surfaces are tried in a random order and kept when they do not push the share past ``hi``;
    the first painted surface takes the ``primary`` hue family, the others random families.
    Furniture keeps its face shading (the ratio of its albedo to its base colour). If no order
    reaches ``lo`` the closest one found is used (the share is recorded in set.toml)."""
    ids = [int(k) for k in np.unique(region) if k >= 0]
    area = {k: float((region == k).mean()) for k in ids}
    lo, hi = share
    best: list[int] = []
    best_share = 0.0
    for _ in range(12):
        chosen: list[int] = []
        total = 0.0
        for k in rng.permutation(ids):
            if total + area[int(k)] <= hi:
                chosen.append(int(k))
                total += area[int(k)]
            if total >= lo:
                break
        if abs(total - (lo + hi) / 2) < abs(best_share - (lo + hi) / 2) or not best:
            best, best_share = chosen, total
        if lo <= total <= hi:
            break
    fams = list(HUE_FAMILIES)
    for j, k in enumerate(best):
        fam = primary if (j == 0 and primary) else str(rng.choice(fams))
        lin = srgb_decode(paint_colour(rng, fam))
        m = region == k
        if k >= 4:  # furniture: keep the face shading of the block
            base = albedo[m]
            shade = base.max(-1) / max(float(base.max()), 1e-6)
            albedo[m] = lin * shade[:, None]
        else:
            albedo[m] = lin
    return best_share


@dataclass
class Room:
    """Albedo (linear) and illumination (scalar) fields of a one-point-perspective room,
    rendered at 2x and area-averaged down."""

    h: int
    w: int
    albedo: np.ndarray = field(init=False)
    light: np.ndarray = field(init=False)
    emissive: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.albedo = np.zeros((self.h, self.w, 3))
        self.light = np.ones((self.h, self.w))
        self.emissive = np.full((self.h, self.w), False)


def _poly_mask(h: int, w: int, pts: np.ndarray) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def render_room(rng: np.random.Generator, w: int, h: int, mode: str, primary: str | None,
                paint_share: tuple[float, float] | None = None) -> np.ndarray:
    """An interior-like scene, sRGB-encoded float (h, w, 3).

    ``mode="paint"``: walls / accents / furniture in strongly saturated paints (``primary``
    hue family on the back wall); ``mode="neutral"``: greys and off-whites, with a small
    saturated accent in about half of the scenes; ``mode="interior"``: a furnished room as
    real-estate photographs show it -- off-white / greige walls, wood floors and furniture,
    muted fabrics (HSV S up to ~0.6, hue mostly warm) -- in which surfaces are repainted in
    strongly saturated paints (``primary`` first) until the painted share of the frame lies in
    ``paint_share`` = (lo, hi) (None or (0, 0): no paint). See :func:`_paint_surfaces`.
    """
    H, W = 2 * h, 2 * w
    yy, xx = np.mgrid[0:H, 0:W]
    u = (xx + 0.5) / W
    v = (yy + 0.5) / H
    vpx, vpy = rng.uniform(0.40, 0.60), rng.uniform(0.38, 0.52)
    s = rng.uniform(0.40, 0.55)  # back wall = image rect scaled by s about the vanishing point
    fl = np.maximum((vpx - u) / vpx, 0.0)
    fr = np.maximum((u - vpx) / (1 - vpx), 0.0)
    fc = np.maximum((vpy - v) / vpy, 0.0)
    ff = np.maximum((v - vpy) / (1 - vpy), 0.0)
    stack = np.stack([fl, fr, fc, ff])
    d = stack.max(0)  # 's' on the back wall's border, 1 at the image border
    face = np.where(d <= s, 0, 1 + stack.argmax(0))  # 0 back, 1 left, 2 right, 3 ceiling, 4 floor
    dd = np.maximum(d, 1e-6)
    # face-local coordinates: back wall (bx, by) in [0,1]; side walls (depth 1/d, height qy)
    bx = vpx + (u - vpx) / s  # back wall: position on the image rect scaled back, in [0, 1]
    by = vpy + (v - vpy) / s
    qy = vpy + (v - vpy) / dd  # side walls: height on the image border, in [0,1]
    qx = vpx + (u - vpx) / dd  # floor / ceiling: across position on the image border

    rng_col = rng
    if mode == "paint":
        fams = [f for f in HUE_FAMILIES if f != primary]
        others = list(rng_col.choice(fams, size=4, replace=False))
        wall_back = paint_colour(rng_col, primary or others.pop())
        side = paint_colour(rng_col, others[0]) if rng_col.uniform() < 0.5 else wall_back.copy()
        side2 = paint_colour(rng_col, others[1]) if rng_col.uniform() < 0.4 else neutral_colour(rng_col, (0.8, 0.92))
        walls = {0: wall_back, 1: side, 2: side2}
        if rng_col.uniform() < 0.5:
            walls[1], walls[2] = walls[2], walls[1]
        accent = paint_colour(rng_col, others[2])
        furniture_fams = [others[3], others[2], primary or others[0]]
    elif mode == "interior":
        wall = interior_wall_colour(rng_col)
        walls = {0: wall, 1: interior_wall_colour(rng_col) if rng_col.uniform() < 0.4 else wall.copy(), 2: wall.copy()}
        accent = interior_furnishing_colour(rng_col)
        furniture_fams = []
    else:
        wall = neutral_colour(rng_col, (0.6, 0.92))
        walls = {0: wall, 1: neutral_colour(rng_col, (0.6, 0.92)), 2: wall.copy()}
        accent = neutral_colour(rng_col, (0.35, 0.8))
        furniture_fams = []
    ceiling = neutral_colour(rng_col, (0.86, 0.94))
    floor_kind = rng_col.choice(["wood", "wood", "tiles", "carpet"] if mode == "interior" else ["wood", "tiles", "carpet"])
    if floor_kind == "wood":
        floor = hsv_to_srgb(rng_col.uniform(22, 36), rng_col.uniform(0.35, 0.6), rng_col.uniform(0.45, 0.7))
        if mode == "neutral":
            floor = neutral_colour(rng_col, (0.4, 0.65))
        elif mode == "interior":  # the same draws, a paler wood: S <= 0.46, below the high-chroma mask
            floor = hsv_to_srgb(*colour.RGB_to_HSV(floor) * [360.0, 0.7, 1.0])
    elif floor_kind == "tiles":
        floor = neutral_colour(rng_col, (0.55, 0.85))
    elif mode == "interior":
        floor = interior_furnishing_colour(rng_col)
    else:
        floor = (
            paint_colour(rng_col, str(rng_col.choice(list(HUE_FAMILIES))))
            if mode == "paint" and rng_col.uniform() < 0.5
            else neutral_colour(rng_col, (0.35, 0.6))
        )

    albedo = np.zeros((H, W, 3))
    for k, c in walls.items():
        albedo[face == k] = srgb_decode(c)
    albedo[face == 3] = srgb_decode(ceiling)
    albedo[face == 4] = srgb_decode(floor)

    # floor texture
    fmask = face == 4
    depth = 1.0 / dd  # world depth ~ 1/d
    if floor_kind == "wood":
        n_boards = rng_col.integers(7, 12)
        board = np.floor(qx * n_boards)
        tone = 1.0 + 0.10 * np.sin(board * 12.9898 + rng_col.uniform(0, 6)) * np.cos(board * 4.1414)
        grain = 1.0 + 0.04 * np.sin(qx * n_boards * 40.0 + 3.0 * np.sin(depth * 7.0))
        seam = np.abs((qx * n_boards) % 1.0 - 0.5) > 0.47
        f = tone * grain * np.where(seam, 0.7, 1.0)
        albedo[fmask] *= f[fmask, None]
    elif floor_kind == "tiles":
        n_t = rng_col.integers(4, 8)
        gx = np.abs((qx * n_t) % 1.0 - 0.5) > 0.46
        gz = np.abs((depth * 2.0) % 1.0 - 0.5) > 0.46
        grout = (gx | gz) & fmask
        albedo[grout] *= 0.55

    # accent panel (a door or a painted niche) on the back wall
    ax0 = rng_col.uniform(0.05, 0.55)
    aw = rng_col.uniform(0.15, 0.3)
    aht = rng_col.uniform(0.45, 0.85)
    amask = (face == 0) & (bx > ax0) & (bx < ax0 + aw) & (by > 1 - aht)
    albedo[amask] = srgb_decode(accent)
    region = np.where(face <= 2, face, -1)  # surfaces that may be repainted: 0-2 walls, 3 accent, 4+ furniture
    region[amask] = 3

    # window on the back wall or a side wall: emissive sky, white frame
    emissive = np.zeros((H, W, 3))
    is_emissive = np.full((H, W), False)
    win_side = int(rng_col.integers(0, 3))
    if win_side == 0:
        lx, ly = bx, by
        wx0 = rng_col.uniform(0.55, 0.7) if ax0 < 0.4 else rng_col.uniform(0.08, 0.2)
        wrect = (wx0, wx0 + rng_col.uniform(0.2, 0.28), rng_col.uniform(0.15, 0.25), rng_col.uniform(0.55, 0.65))
    else:
        lx = depth
        ly = qy
        z0 = rng_col.uniform(1.15, 1.5)
        wrect = (z0, z0 + rng_col.uniform(0.3, 0.5), rng_col.uniform(0.2, 0.3), rng_col.uniform(0.55, 0.65))
    wface = face == (0 if win_side == 0 else win_side)
    inwin = wface & (lx > wrect[0]) & (lx < wrect[1]) & (ly > wrect[2]) & (ly < wrect[3])
    fw = 0.012 if win_side == 0 else 0.03
    outer = wface & (lx > wrect[0] - fw) & (lx < wrect[1] + fw) & (ly > wrect[2] - fw * 1.5) & (ly < wrect[3] + fw * 1.5)
    mid = (wrect[0] + wrect[1]) / 2
    frame = (outer & ~inwin) | (inwin & (np.abs(lx - mid) < fw / 2))
    albedo[frame] = srgb_decode(np.array([0.93, 0.93, 0.92]))
    glass = inwin & ~frame
    region[outer | inwin] = -1
    sky_t = np.clip((ly - wrect[2]) / (wrect[3] - wrect[2]), 0, 1)
    sky_top = srgb_decode(hsv_to_srgb(rng_col.uniform(200, 215), rng_col.uniform(0.18, 0.35), 0.97))
    sky_low = srgb_decode(hsv_to_srgb(rng_col.uniform(195, 210), rng_col.uniform(0.05, 0.15), 0.98))
    sky = sky_top * (1 - sky_t[..., None]) + sky_low * sky_t[..., None]
    horizon = sky_t > rng_col.uniform(0.65, 0.8)
    green = srgb_decode(hsv_to_srgb(rng_col.uniform(85, 115), rng_col.uniform(0.35, 0.6), rng_col.uniform(0.45, 0.6)))
    sky[horizon] = green
    emissive[glass] = sky[glass]
    is_emissive |= glass
    wcx, wcy = (u[glass].mean(), v[glass].mean()) if glass.any() else (0.5, 0.3)

    # furniture: boxes standing on the floor, drawn back to front
    n_box = int(rng_col.integers(1, 4)) if mode == "paint" else int(rng_col.integers(2, 5)) if mode == "interior" else int(rng_col.integers(1, 3))
    boxes = []
    for i in range(n_box):
        bw_ = rng_col.uniform(0.14, 0.32)
        bh_ = rng_col.uniform(0.10, 0.22)
        cx = rng_col.uniform(0.12, 0.88)
        by1 = rng_col.uniform(0.80, 0.97)
        boxes.append((by1, cx, bw_, bh_, i))
    for by1, cx, bw_, bh_, i in sorted(boxes):
        if mode == "paint":
            col = paint_colour(rng_col, furniture_fams[i % len(furniture_fams)])
        elif mode == "interior":
            col = interior_furnishing_colour(rng_col)
        elif rng_col.uniform() < 0.5 and i == 0:
            col = paint_colour(rng_col, str(rng_col.choice(["red", "blue", "yellow", "teal"])))  # small accent
            bw_, bh_ = bw_ * 0.45, bh_ * 0.5
        else:
            col = neutral_colour(rng_col, (0.35, 0.85))
        x0, x1 = cx - bw_ / 2, cx + bw_ / 2
        y1, y0 = by1, by1 - bh_
        k = rng_col.uniform(0.10, 0.20)  # depth of the box towards the vanishing point

        def toward(px: float, py: float) -> tuple[float, float]:
            return px + k * (vpx - px), py + k * (vpy - py)

        front = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        top = np.array([[x0, y0], [x1, y0], toward(x1, y0), toward(x0, y0)])
        if cx < vpx:
            sidep = np.array([[x1, y0], toward(x1, y0), toward(x1, y1), [x1, y1]])
        else:
            sidep = np.array([[x0, y0], toward(x0, y0), toward(x0, y1), [x0, y1]])
        lin = srgb_decode(col)
        for poly, shade in ((sidep, 0.62), (top, 1.12), (front, 0.85)):
            m = _poly_mask(H, W, poly * [W, H])
            albedo[m] = lin * shade
            is_emissive[m] = False
            face[m] = 5
            region[m] = 4 + i
    if mode == "interior" and paint_share is not None and paint_share[1] > 0:
        _paint_surfaces(rng_col, albedo, region, paint_share, primary)

    # illumination: per-face base, window glow, corner occlusion, vignetting
    base = np.array([0.86, 0.72, 0.80, 0.92, 0.70, 0.95])
    if win_side in (1, 2):
        base[win_side] = 0.95
    light = base[face]
    r2 = (u - wcx) ** 2 / 0.30 + (v - wcy) ** 2 / 0.45
    light = light * (0.62 + 0.50 * np.exp(-r2))
    edge = np.abs(d - s)  # distance to the back wall's border in 'd' units
    light *= np.where(face == 5, 1.0, 1.0 - 0.22 * np.exp(-edge / 0.04))
    light *= 1.0 - 0.22 * ((u - 0.5) ** 2 + (v - 0.5) ** 2)
    # subtle low-frequency texture (plaster / paint unevenness) and fine grain
    tex = 1.0 + 0.035 * smooth_noise(rng_col, H, W, 9) + 0.012 * smooth_noise(rng_col, H, W, 60)
    lin = np.clip(albedo * (light * tex)[..., None], 0.0, 1.0)
    lin[is_emissive] = emissive[is_emissive]
    lin = resize_area(lin, w, h)
    return srgb_encode(lin)


# ---------------------------------------------------------------------------------------
# photographs and textures from scikit-image's bundled data (no downloads)
# ---------------------------------------------------------------------------------------


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def load_skimage_rgb(fname: str) -> np.ndarray:
    """An image file that ships inside the scikit-image package, as sRGB float (H, W, 3).

    Files with an embedded ICC profile other than sRGB (rocket.jpg is Adobe RGB (1998),
    color.png a display profile, page.png a grey "Dot Gain 20%") are converted to sRGB with
    LittleCMS (Pillow ImageCms, relative colorimetric intent, 8 bits); alpha is dropped,
    greyscale is repeated to three channels."""
    import io

    from PIL import Image, ImageCms

    p = skimage_data_dir() / fname
    if not p.is_file():
        raise FileNotFoundError(f"{p} is not bundled with this scikit-image (refusing to download)")
    with Image.open(p) as im:
        im.load()
        icc = im.info.get("icc_profile")
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "sRGB" not in ImageCms.getProfileDescription(src):
                im = ImageCms.profileToProfile(
                    im, src, ImageCms.createProfile("sRGB"),
                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB",
                )
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return from_u8(np.ascontiguousarray(arr))


def fit_long_edge(x: np.ndarray, long_edge: int) -> np.ndarray:
    h, w = x.shape[:2]
    f = long_edge / max(h, w)
    nh, nw = max(8, int(round(h * f / 2)) * 2), max(8, int(round(w * f / 2)) * 2)
    return resize_area(x, nw, nh)


def crop(x: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    return x[y0 : y0 + h, x0 : x0 + w]


@dataclass(frozen=True)
class PhotoSpec:
    name: str
    file: str
    box: tuple[int, int, int, int] | None  # (y0, x0, h, w) in source pixels, None = whole
    long_edge: int
    licence: str


_CC0 = "CC0"
_PD = "public domain"
PHOTOS_GATE = [
    PhotoSpec("astronaut", "astronaut.png", None, 256, _PD + " (NASA)"),
    PhotoSpec("chelsea", "chelsea.png", None, 288, _CC0 + " (Stefan van der Walt)"),
    PhotoSpec("coffee", "coffee.png", None, 288, _CC0 + " (Rachel Michetti)"),
    PhotoSpec("coffee_detail", "coffee.png", (60, 180, 192, 288), 288, _CC0 + " (Rachel Michetti)"),
    PhotoSpec("rocket", "rocket.jpg", None, 288, _PD + " (SpaceX)"),
    PhotoSpec("motorcycle", "motorcycle_left.png", None, 288, "Middlebury 2014 stereo benchmark (scikit-image data)"),
    PhotoSpec("motorcycle_detail", "motorcycle_left.png", (150, 300, 192, 288), 288, "Middlebury 2014 stereo benchmark (scikit-image data)"),
]
#: Training photographs: other files than the gate's (motorcycle_right is excluded: it is the
#: same scene as the gate's motorcycle_left).
PHOTOS_TRAIN_FILES = {
    "ihc": ("ihc.png", "no known copyright restrictions (CMMI)"),
    "retina": ("retina.jpg", "CC0 (Mikael Häggström, Wikimedia)"),
    "hubble": ("hubble_deep_field.jpg", "public domain (NASA)"),
    "colorwheel": ("color.png", "scikit-image data"),
}

#: Greyscale textures (scikit-image) made into low-chroma surfaces: gate vs train.
TEXTURES_GATE = {
    "concrete": ("gravel.png", (0.0, 0.03, 0.62), "CC0 (cc0textures Gravel04)"),
    "paper": ("page.png", (40.0, 0.04, 0.95), "scikit-image data (scanned page)"),
}
TEXTURES_TRAIN = {
    "brick_grey": ("brick.png", (20.0, 0.05, 0.80), "CC0 (cc0textures Bricks25)"),
    "clock": ("clock_motion.png", (35.0, 0.03, 0.9), "public domain (Stefan van der Walt)"),
    "coins": ("coins.png", (210.0, 0.03, 0.9), "no known copyright restrictions (Brooklyn Museum)"),
    "moon": ("moon.png", (0.0, 0.0, 1.0), "scikit-image data"),
    "camera": ("camera.png", (30.0, 0.02, 1.0), "CC0 (Lav Varshney)"),
}
#: A colourised greyscale texture for training (strongly coloured natural texture).
GRASS_TRAIN = ("grass.png", (105.0, 0.75, 0.85), "CC0 (DeviantArt linolafett Grass-01)")


def tinted_texture(fname: str, hsv: tuple[float, float, float], w: int, h: int, rng: np.random.Generator | None,
                   zoom: float = 1.0) -> np.ndarray:
    """A greyscale texture (its linear luminance) times a tint (HSV, sRGB-encoded), optionally
    a random crop of 1/zoom of the source; sRGB-encoded float (h, w, 3)."""
    src = load_skimage_rgb(fname)[..., 0]
    sh, sw = src.shape
    ch, cw = int(sh / zoom), int(sw / zoom)
    ar = w / h
    if cw / ch > ar:
        cw = int(ch * ar)
    else:
        ch = int(cw / ar)
    y0 = int(rng.integers(0, sh - ch + 1)) if rng is not None else (sh - ch) // 2
    x0 = int(rng.integers(0, sw - cw + 1)) if rng is not None else (sw - cw) // 2
    g = resize_area(np.repeat(src[y0 : y0 + ch, x0 : x0 + cw, None], 3, 2), w, h)
    tint = srgb_decode(hsv_to_srgb(*hsv))
    # normalise the texture's luminance to mean ~0.55 (linear) so tint sets the colour
    lin = srgb_decode(g)
    lin = lin / max(lin.mean(), 1e-3) * 0.45
    return srgb_encode(lin * tint)


# ---------------------------------------------------------------------------------------
# set builders: each yields (stem, gt_u8, lq_u8, meta)
# ---------------------------------------------------------------------------------------

Item = tuple[str, np.ndarray, np.ndarray, dict[str, Any]]


def build_colorchecker(base_seed: int = STRESS_SEED) -> Iterator[Item]:
    _, refl = checker_reflectances()
    for i, shot in enumerate(CHART_SHOTS_GATE):
        rng = rng_for(base_seed, "colorchecker", i)
        gt, lq = chart_pair(refl, shot.illuminant, shot.exposure, rng, **CHART_GATE_GEOMETRY)
        yield shot.name, gt, lq, {"illuminant": shot.illuminant, "exposure": shot.exposure}


PAINT_SIZE = (288, 192)  # (w, h)


def build_saturated_paint(base_seed: int = STRESS_SEED, n: int = 10) -> Iterator[Item]:
    """Held-out furnished rooms with a painted minority of the frame (PAINT_SHARE_GATE) and
    per-image degradations from PAINT_RANGES (the strong end of, or just past, TRAIN_RANGES)."""
    for i in range(n):
        rng = rng_for(base_seed, "saturated_paint", i)
        fam = PAINT_PRIMARY_GATE[i % len(PAINT_PRIMARY_GATE)]
        gt = render_room(rng, *PAINT_SIZE, "interior", fam, paint_share=PAINT_SHARE_GATE)
        gt = to_u8(gt)
        deg = sample_degradation(rng, PAINT_RANGES)
        share = round(float((hsv_saturation(from_u8(gt)) >= 0.5).mean()), 4)
        yield f"room_{i:02d}_{fam}", gt, deg(from_u8(gt), rng), {"primary": fam, "hc_share": share, **deg.as_toml()}


def build_photos(base_seed: int = STRESS_SEED) -> Iterator[Item]:
    for i, spec in enumerate(PHOTOS_GATE):
        rng = rng_for(base_seed, "photos", i)
        src = load_skimage_rgb(spec.file)
        if spec.box is not None:
            src = crop(src, *spec.box)
        gt = to_u8(fit_long_edge(src, spec.long_edge))
        deg = sample_degradation(rng, PHOTO_RANGES)
        lq = deg(from_u8(gt), rng)
        yield spec.name, gt, lq, {"source": spec.file, "box": spec.box, "licence": spec.licence, **deg.as_toml()}


NEUTRAL_SIZE = (288, 192)


def build_neutral(base_seed: int = STRESS_SEED, n_rooms: int = 6) -> Iterator[Item]:
    items: list[tuple[str, Callable[[np.random.Generator], np.ndarray], dict[str, Any]]] = []
    for i in range(n_rooms):
        items.append((f"grey_room_{i:02d}", lambda r: render_room(r, *NEUTRAL_SIZE, "neutral", None), {}))
    for name, (fname, hsv, lic) in TEXTURES_GATE.items():
        items.append(
            (name, lambda r, f=fname, t=hsv: tinted_texture(f, t, *NEUTRAL_SIZE, None), {"source": fname, "licence": lic})
        )
    for i, (name, make, meta) in enumerate(items):
        rng = rng_for(base_seed, "neutral", i)
        gt = to_u8(make(rng))
        deg = sample_degradation(rng, NEUTRAL_RANGES)
        lq = deg(from_u8(gt), rng)
        yield name, gt, lq, {**meta, **deg.as_toml()}


# ---------------------------------------------------------------------------------------
# colorization: grey LQ (CIE Y of the GT), colour GT
# ---------------------------------------------------------------------------------------

#: sRGB (IEC 61966-2-1) linear RGB -> CIE Y: the luminance row of colour-science's sRGB matrix
#: (0.2126, 0.7152, 0.0722), as colorfid.color.linear_rgb_to_xyz and colorfid.train.data.to_grayscale.
_Y_ROW = np.asarray(colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ, dtype=np.float64)[1]
COLORIZATION_SIZE = (288, 192)  # (w, h) of the synthetic scenes


def grey_of(gt_u8: np.ndarray) -> np.ndarray:
    """The colourization input of an 8-bit sRGB GT: its CIE luminance Y (linear sRGB, D65),
    re-encoded with the sRGB transfer function, rounded to 8 bits, copied to R = G = B."""
    y = srgb_decode(from_u8(gt_u8)) @ _Y_ROW
    return np.repeat(to_u8(srgb_encode(y))[..., None], 3, axis=2)


def lab_to_linear(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65, 2°) -> linear sRGB (colour-science's XYZ -> sRGB matrix), unclipped."""
    return np.asarray(colour.Lab_to_XYZ(lab), dtype=np.float64) @ _M_XYZ_TO_SRGB.T


def max_chroma(lightness: float, hue_deg: float) -> float:
    """The largest CIELAB chroma C*ab at (L*, h_ab) inside the sRGB gamut (bisection, 1e-6)."""
    h = np.radians(hue_deg)
    lo, hi = 0.0, 200.0
    for _ in range(40):
        c = (lo + hi) / 2
        lin = lab_to_linear(np.array([lightness, c * np.cos(h), c * np.sin(h)]))
        lo, hi = (c, hi) if lin.min() >= 0.0 and lin.max() <= 1.0 else (lo, c)
    return lo


def common_chroma(lightness: tuple[float, float], hues: np.ndarray, margin: float = 0.95) -> float:
    """A chroma every hue of ``hues`` reaches inside the sRGB gamut at every L* of the range
    (the minimum over a 5-step L* grid and the hues), times ``margin``."""
    grid = np.linspace(lightness[0], lightness[1], 5)
    return margin * min(max_chroma(L, float(h)) for L in grid for h in hues)


def lch_field(L: np.ndarray, C: np.ndarray, h_deg: np.ndarray) -> np.ndarray:
    """Linear sRGB of per-pixel L*, C*ab, h_ab (arrays of one shape), clipped to [0, 1]."""
    h = np.radians(h_deg)
    lab = np.stack([L, C * np.cos(h), C * np.sin(h)], axis=-1)
    return np.clip(lab_to_linear(lab), 0.0, 1.0)


def _finish(L: np.ndarray, C: np.ndarray, h: np.ndarray, w: int, h_px: int) -> np.ndarray:
    """Render the 2x fields, area-average in linear light to (h_px, w), encode: sRGB float."""
    return srgb_encode(resize_area(lch_field(L, C, h), w, h_px))


def scene_discs(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Eight flat discs at L* 62 (±1 of texture) in eight hues 45° apart at one chroma, on a
    neutral L* 32 ground: the grey input shows eight identical discs."""
    W, H = 2 * w, 2 * h
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    hues = (rng.uniform(0, 360) + 45.0 * np.arange(8)) % 360
    c = common_chroma((61.0, 63.0), hues)
    L = 32.0 + 1.5 * smooth_noise(rng, H, W, 6)
    C = np.zeros((H, W))
    hh = np.zeros((H, W))
    placed: list[tuple[float, float, float]] = []
    for hue in rng.permutation(hues):
        for _ in range(2000):
            r = rng.uniform(44, 60)
            cx, cy = rng.uniform(r + 8, W - r - 8), rng.uniform(r + 8, H - r - 8)
            if all(np.hypot(cx - x, cy - y) > r + q + 12 for x, y, q in placed):
                break
        else:  # pragma: no cover - the canvas has room for eight discs
            raise RuntimeError("scene_discs: no room")
        placed.append((cx, cy, r))
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        L[m] = 62.0 + smooth_noise(rng, H, W, 12)[m]
        C[m], hh[m] = c, hue
    return _finish(L, C, hh, w, h), {"lightness": 62.0, "chroma": round(c, 3), "hues": [round(float(x), 3) for x in hues]}


def scene_stripes(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Twelve vertical bands at L* 55, hues 30° apart in a random order at one chroma, between
    dark (L* 18) gaps, under and over light (L* 85) neutral borders."""
    W, H = 2 * w, 2 * h
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    hues = (rng.uniform(0, 360) + 30.0 * rng.permutation(12)) % 360
    c = common_chroma((55.0, 55.0), hues)
    L, C, hh = np.full((H, W), 85.0), np.zeros((H, W)), np.zeros((H, W))
    top, bottom, gap = 32, H - 32, 8
    band = (W - 13 * gap) / 12
    inside = (yy > top) & (yy < bottom)
    L[inside] = 18.0
    for k, hue in enumerate(hues):
        x0 = gap + k * (band + gap)
        m = inside & (xx > x0) & (xx < x0 + band)
        L[m], C[m], hh[m] = 55.0, c, hue
    return _finish(L, C, hh, w, h), {"lightness": 55.0, "chroma": round(c, 3), "hues": [round(float(x), 3) for x in hues]}


def scene_checker(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A 6 x 4 checkerboard of two complementary hues (180° apart) at L* 70 and one chroma,
    with L* 40 grout: the grey input is a grid of identical tiles."""
    W, H = 2 * w, 2 * h
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    h0 = rng.uniform(0, 360)
    hues = np.array([h0, (h0 + 180.0) % 360])
    c = common_chroma((70.0, 70.0), hues)
    L, C, hh = np.full((H, W), 40.0), np.zeros((H, W)), np.zeros((H, W))
    gap = 6
    cw, ch = (W - 7 * gap) / 6, (H - 5 * gap) / 4
    for i in range(4):
        for j in range(6):
            x0, y0 = gap + j * (cw + gap), gap + i * (ch + gap)
            m = (xx > x0) & (xx < x0 + cw) & (yy > y0) & (yy < y0 + ch)
            L[m], C[m], hh[m] = 70.0, c, hues[(i + j) % 2]
    return _finish(L, C, hh, w, h), {"lightness": 70.0, "chroma": round(c, 3), "hues": [round(float(x), 3) for x in hues]}


def scene_ring(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A hue circle at L* 60 and one chroma (hue = polar angle + a random offset) around a
    neutral L* 60 disc, on an L* 25 ground: in grey the ring and the disc are one flat shape."""
    W, H = 2 * w, 2 * h
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    h0 = rng.uniform(0, 360)
    c = common_chroma((60.0, 60.0), np.arange(0.0, 360.0, 5.0))
    cx, cy = W / 2 + rng.uniform(-40, 40), H / 2
    r = np.hypot(xx - cx, yy - cy)
    L, C = np.full((H, W), 25.0), np.zeros((H, W))
    hh = (np.degrees(np.arctan2(yy - cy, xx - cx)) + h0) % 360
    disc = r <= 176
    L[disc] = 60.0
    ring = disc & (r >= 80)
    C[ring] = c
    return _finish(L, C, hh, w, h), {"lightness": 60.0, "chroma": round(c, 3), "hue_offset": round(float(h0), 3)}


def scene_spheres(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Six Lambertian spheres lit from one direction, each in its own hue (60° apart, jittered)
    with the same lightness profile (L* 30-78 with the cosine of the light) and a chroma that
    stays inside the gamut at every L*, on a neutral ground (L* 45-70 gradient)."""
    W, H = 2 * w, 2 * h
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    hues = (rng.uniform(0, 360) + 60.0 * np.arange(6) + rng.uniform(-10, 10, 6)) % 360
    grid = np.linspace(30.0, 78.0, 13)
    c_of_l = np.array([0.95 * min(max_chroma(float(L), float(x)) for x in hues) for L in grid])
    L = 45.0 + 25.0 * yy / H
    C, hh = np.zeros((H, W)), np.zeros((H, W))
    light = np.array([-0.5, -0.6, 0.62])
    light /= np.linalg.norm(light)
    r = 0.42 * H / 2
    for k, hue in enumerate(rng.permutation(hues)):
        cx = (k % 3 + 0.5) * W / 3 + rng.uniform(-20, 20)
        cy = (k // 3 + 0.5) * H / 2 + rng.uniform(-10, 10)
        dx, dy = (xx - cx) / r, (yy - cy) / r
        m = dx * dx + dy * dy < 1.0
        nz = np.sqrt(np.clip(1.0 - dx * dx - dy * dy, 0.0, 1.0))
        shade = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0.0, 1.0)
        Lk = 30.0 + 48.0 * shade
        L[m] = Lk[m]
        C[m] = np.interp(Lk[m], grid, c_of_l)
        hh[m] = hue
    return _finish(L, C, hh, w, h), {"lightness_range": [30.0, 78.0], "hues": [round(float(x), 3) for x in hues]}


#: The synthetic scenes: objects of one lightness in several hues (hue is not in the grey input).
COLORIZATION_SCENES: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, dict[str, Any]]]] = {
    "discs_l62": scene_discs,
    "stripes_l55": scene_stripes,
    "checker_l70": scene_checker,
    "ring_l60": scene_ring,
    "spheres": scene_spheres,
}
#: The photographs: every colour photograph scikit-image bundles that no training pair uses.
#: All but motorcycle_right are the `photos` set's (same framing); motorcycle_right is used by no
#: other set (the training pairs exclude it: same scene as motorcycle_left).
COLORIZATION_PHOTOS = [
    *(p for p in PHOTOS_GATE if p.name in ("astronaut", "chelsea", "coffee", "rocket")),
    PhotoSpec("motorcycle_right", "motorcycle_right.png", None, 288, "Middlebury 2014 stereo benchmark (scikit-image data)"),
]


def build_colorization(base_seed: int = STRESS_SEED) -> Iterator[Item]:
    """Grey LQ (:func:`grey_of`, R = G = B) from colour GT: the held-out photographs of
    COLORIZATION_PHOTOS and the equal-lightness scenes of COLORIZATION_SCENES."""
    for i, spec in enumerate(COLORIZATION_PHOTOS):
        src = load_skimage_rgb(spec.file)
        if spec.box is not None:
            src = crop(src, *spec.box)
        gt = to_u8(fit_long_edge(src, spec.long_edge))
        yield spec.name, gt, grey_of(gt), {"source": spec.file, "box": spec.box, "licence": spec.licence}
    for j, (name, make) in enumerate(COLORIZATION_SCENES.items()):
        rng = rng_for(base_seed, "colorization", len(COLORIZATION_PHOTOS) + j)
        img, meta = make(rng, *COLORIZATION_SIZE)
        gt = to_u8(img)
        yield name, gt, grey_of(gt), {"source": "synthetic", **meta}


STRESS_BUILDERS: dict[str, Callable[[], Iterator[Item]]] = {
    "colorchecker": build_colorchecker,
    "saturated_paint": build_saturated_paint,
    "photos": build_photos,
    "neutral": build_neutral,
    "colorization": build_colorization,
}

TRAIN_SIZE = 128  # training pairs are TRAIN_SIZE x TRAIN_SIZE
TRAIN_COUNTS = {"room": 64, "texture": 5, "chart": 12, "photo": 15}
#: Every fourth training room is repainted: paint is a minority of the images and of their pixels.
TRAIN_PAINT_EVERY = 4


def build_train(base_seed: int = TRAIN_SEED, size: int = TRAIN_SIZE, counts: dict[str, int] | None = None) -> Iterator[Item]:
    """Training pairs: same generators and degradation families as the stress sets, other
    seeds, other scenes, charts of mixed (never pure) ColorChecker reflectances, other
    photographs and textures."""
    counts = dict(TRAIN_COUNTS if counts is None else counts)
    fams = list(HUE_FAMILIES)
    for i in range(counts.get("room", 0)):
        rng = rng_for(base_seed, "train_room", i)
        painted = i % TRAIN_PAINT_EVERY == TRAIN_PAINT_EVERY - 1
        fam = fams[(i // TRAIN_PAINT_EVERY) % len(fams)] if painted else None
        gt = to_u8(render_room(rng, size, size, "interior", fam, paint_share=PAINT_SHARE_TRAIN if painted else None))
        deg = sample_degradation(rng, TRAIN_RANGES)
        yield f"{'paint' if painted else 'room'}_{i:03d}", gt, deg(from_u8(gt), rng), {}
    tex = list(TEXTURES_TRAIN.items())
    for i in range(counts.get("texture", 0)):
        rng = rng_for(base_seed, "train_texture", i)
        name, (fname, hsv, _) = tex[i % len(tex)]
        gt = to_u8(tinted_texture(fname, hsv, size, size, rng, zoom=1.5))
        yield f"texture_{name}_{i:03d}", gt, sample_degradation(rng, NEUTRAL_RANGES)(from_u8(gt), rng), {}
    for i in range(counts.get("chart", 0)):
        rng = rng_for(base_seed, "train_chart", i)
        rows, cols = int(rng.integers(3, 6)), int(rng.integers(3, 6))
        gap = int(rng.integers(3, 8))
        patch = (size - 12 - (max(rows, cols) - 1) * gap) // max(rows, cols)
        mh = (size - rows * patch - (rows - 1) * gap) // 2
        mw = (size - cols * patch - (cols - 1) * gap) // 2
        refl = random_chart_reflectances(rng, rows * cols)
        ill = CHART_ILLUMINANTS_TRAIN[i % len(CHART_ILLUMINANTS_TRAIN)]
        exposure = round(float(rng.uniform(0.4, 1.0)), 3)
        gt, lq = chart_pair(refl, ill, exposure, rng, rows, cols, patch, gap, (mh, mw))
        pad = ((0, size - gt.shape[0]), (0, size - gt.shape[1]), (0, 0))
        gt, lq = np.pad(gt, pad, mode="edge"), np.pad(lq, pad, mode="edge")
        yield f"chart_{i:03d}", gt, lq, {"illuminant": ill, "exposure": exposure}
    photo_keys = ["ihc", "ihc", "ihc", "ihc", "retina", "retina", "retina", "hubble", "hubble", "colorwheel", "grass", "grass", "ihc"]
    for i in range(counts.get("photo", 0)):
        rng = rng_for(base_seed, "train_photo", i)
        key = photo_keys[i % len(photo_keys)]
        if key == "grass":
            gt = to_u8(tinted_texture(GRASS_TRAIN[0], GRASS_TRAIN[1], size, size, rng, zoom=2.0))
        else:
            src = load_skimage_rgb(PHOTOS_TRAIN_FILES[key][0])
            sh, sw = src.shape[:2]
            c = int(min(sh, sw) * rng.uniform(0.35, 0.6)) if key != "colorwheel" else min(sh, sw)
            lo_y, lo_x = (sh // 4, sw // 4) if key == "retina" else (0, 0)
            hi_y, hi_x = (3 * sh // 4 - c, 3 * sw // 4 - c) if key == "retina" else (sh - c, sw - c)
            y0 = int(rng.integers(lo_y, max(lo_y, hi_y) + 1))
            x0 = int(rng.integers(lo_x, max(lo_x, hi_x) + 1))
            gt = to_u8(resize_area(src[y0 : y0 + c, x0 : x0 + c], size, size))
        deg = sample_degradation(rng, PHOTO_RANGES)
        yield f"photo_{key}_{i:03d}", gt, deg(from_u8(gt), rng), {}


# ---------------------------------------------------------------------------------------
# set.toml / writing
# ---------------------------------------------------------------------------------------

DESCRIPTIONS = {
    "colorchecker": (
        "ColorChecker (N. Ohta spectra, colour-science) rendered under D65 (GT) and under "
        "tungsten / fluorescent / LED / daylight illuminants, some under-exposed, without white "
        "balance (LQ): colour casts with known truth."
    ),
    "saturated_paint": (
        "Held-out furnished rooms (off-white walls, wood, muted fabrics) in which strongly saturated "
        "paint covers a minority of the frame (walls, a door, furniture); LQ: per-image exposure, "
        "white balance, contrast, saturation and chroma roll-off at the strong end of the training "
        "pairs' range or just past it, plus noise: the 'repainted walls' case, where a "
        "whole-image saturation average hides the washout."
    ),
    "photos": (
        "Photographs bundled with scikit-image (GT, resized) and a realistic 'before' (exposure, "
        "white balance, contrast, desaturation, noise, JPEG) as LQ."
    ),
    "neutral": (
        "Low-chroma interiors, concrete and paper (GT) with slightly dark, warm-cast LQ: catches "
        "false casts; small saturated accents show how global averages hide colour loss."
    ),
    "colorization": (
        "Colourization (grey -> colour): scikit-image colour photographs held out from every training "
        "pair, and synthetic scenes whose objects share one CIELAB lightness in several hues (hue is not "
        "in the input); LQ = the GT's CIE luminance Y, sRGB-encoded, R = G = B. Opt-in: run it by name "
        "(colorfid eval --sets colorization); restoration models are not colourizers."
    ),
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(round(float(v), 6))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def set_toml(name: str, metas: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"# Generated by {SCRIPT} (do not edit by hand; rerun the script).",
        f"description = {_toml_value(DESCRIPTIONS[name])}",
        "",
        "[provenance]",
        f"script = {_toml_value(SCRIPT)}",
        f"command = {_toml_value('python ' + SCRIPT + ' --what stress')}",
        f"base_seed = {STRESS_SEED}",
        'seeding = "numpy SeedSequence([base_seed, crc32(set name), image index])"',
        "",
    ]
    if name == "saturated_paint":
        lines += ["[degradation]", 'kind = "per_image"',
                  'steps = "lin = decode(x)*exposure*wb; y = encode(clip(lin,0,1)); y = pivot + contrast*(y - pivot); '
                  'y = Y + saturation*(y - Y) with Y = 0.299R+0.587G+0.114B; y = Y + (y - Y)/(1 + chroma_rolloff*|y - Y|); '
                  'y += N(0, noise_sigma^2); clip; round to 8 bits"',
                  "# uniform ranges the per-image values were drawn from (the training rooms: train_*_range)"]
        lines += [f"{k}_range = {_toml_value(list(v))}" for k, v in PAINT_RANGES.items()]
        lines += [f"train_{k}_range = {_toml_value(list(v))}" for k, v in TRAIN_RANGES.items()]
        lines.append(f"paint_share_range = {_toml_value(list(PAINT_SHARE_GATE))}")
        lines.append("")
    elif name == "colorchecker":
        lines += [
            "[degradation]",
            'kind = "spectral"',
            f"chart = {_toml_value(CHECKER)}",
            'observer = "CIE 1931 2 Degree Standard Observer"',
            'gt_illuminant = "D65"',
            f"surround_reflectance = {CHART_SURROUND_REFLECTANCE}",
            f"lq_gradient = {CHART_LQ_GRADIENT}",
            f"lq_noise_sigma = {CHART_LQ_NOISE}",
            "",
        ]
    elif name == "colorization":
        lines += [
            "[degradation]",
            'kind = "grayscale"',
            'steps = "Y = 0.2126 R + 0.7152 G + 0.0722 B of the decoded (linear) sRGB GT (IEC 61966-2-1, the Y row '
            'of its RGB->XYZ matrix); grey = encode(Y); round to 8 bits; R = G = B = grey"',
            'same_as = "colorfid.train.data.to_grayscale (degradation: grayscale), rounded to 8 bits"',
            'scenes = "objects of one CIELAB L* (D65) in several hues at one chroma inside the sRGB gamut, '
            'rendered at 2x in linear light and area-averaged down; L*, chroma and hues per image below"',
            "",
        ]
    else:
        ranges = PHOTO_RANGES if name == "photos" else NEUTRAL_RANGES
        lines += ["[degradation]", 'kind = "per_image"', "# uniform ranges the per-image values were drawn from"]
        lines += [f"{k}_range = {_toml_value(list(v))}" for k, v in ranges.items()]
        lines.append("")
    for stem, meta in metas.items():
        meta = {k: v for k, v in meta.items() if v is not None}
        if not meta:
            continue
        lines.append(f"[degradation.images.{_toml_key(stem)}]")
        for k, v in meta.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_items(root: Path, items: Iterator[Item]) -> dict[str, dict[str, Any]]:
    metas: dict[str, dict[str, Any]] = {}
    for stem, gt, lq, meta in items:
        assert gt.shape == lq.shape and gt.dtype == np.uint8, (stem, gt.shape, lq.shape)
        write_png(root / "gt" / f"{stem}.png", gt)
        write_png(root / "lq" / f"{stem}.png", lq)
        metas[stem] = meta
        print(f"  {root.name}/{stem}: {gt.shape[1]}x{gt.shape[0]}", flush=True)
    return metas


def build(out: Path, what: list[str], sets: list[str] | None = None) -> None:
    if "stress" in what:
        for name, builder in STRESS_BUILDERS.items():
            if sets and name not in sets:
                continue
            root = out / "stress" / name
            for sub in ("gt", "lq"):
                shutil.rmtree(root / sub, ignore_errors=True)
            metas = write_items(root, builder())
            (root / "set.toml").write_text(set_toml(name, metas), encoding="utf-8")
    if "train" in what:
        root = out / "train"
        for sub in ("gt", "lq"):
            shutil.rmtree(root / sub, ignore_errors=True)
        write_items(root, build_train())


def compare_trees(a: Path, b: Path) -> list[str]:
    diffs = []
    def generated(root: Path) -> set[Path]:  # what build() writes (READMEs are hand-written)
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "README.md"}

    files_a, files_b = generated(a), generated(b)
    for rel in sorted(files_a | files_b):
        if rel not in files_a or rel not in files_b:
            diffs.append(f"only in one tree: {rel}")
        elif not filecmp.cmp(a / rel, b / rel, shallow=False):
            diffs.append(f"differs: {rel}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "golden")
    ap.add_argument("--what", nargs="+", choices=["stress", "train"], default=["stress", "train"])
    ap.add_argument("--sets", nargs="+", choices=list(STRESS_BUILDERS), default=None)
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with --out")
    args = ap.parse_args(argv)
    if not args.check:
        build(args.out, args.what, args.sets)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.what, args.sets)
        diffs = []
        if "stress" in args.what:
            for name in args.sets or list(STRESS_BUILDERS):
                diffs += compare_trees(Path(tmp) / "stress" / name, args.out / "stress" / name)
        if "train" in args.what:
            diffs += compare_trees(Path(tmp) / "train", args.out / "train")
    print("\n".join(diffs) if diffs else "identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
