"""Image files <-> tensors: 8/16-bit PNG and TIFF, JPEG; EXIF orientation; ICC to sRGB; alpha.

:func:`read_image` returns a ``(3, H, W)`` float32 tensor of sRGB-encoded values in [0, 1]:

* 8-bit files are decoded by Pillow; files with more than 8 bits per sample (16-bit PNG / TIFF)
  by OpenCV (``cv2.IMREAD_UNCHANGED``; Pillow would truncate them to 8 bits), keeping all 16
  bits (values / 65535). OpenCV's BGR order is turned into RGB.
* EXIF orientation (tag 274) is applied: ``PIL.ImageOps.exif_transpose`` for Pillow-decoded
  images, the same eight transforms on the array for OpenCV-decoded ones.
* An embedded ICC profile other than sRGB (Display P3, Adobe RGB, ProPhoto, a CMYK or grey
  profile...) is converted to sRGB with LittleCMS through ``PIL.ImageCms`` (relative
  colorimetric intent, no black-point compensation; out-of-gamut colours are clipped to the
  sRGB cube). 16-bit images with an RGB matrix/TRC profile are converted in float64 from the
  profile's own colorant and TRC tags (the same maths LittleCMS applies to matrix-shaper
  profiles) so their 16 bits survive; 16-bit images with LUT-based profiles go through
  ImageCms at 8 bits, with a :class:`~colorfid.errors.ColorfidWarning`. The source profile's
  description is recorded in :class:`ImageMeta`. PNG gAMA/cHRM chunks without an ICC profile
  are not interpreted (the data are taken as sRGB).
* Alpha is dropped (not composited) with a ColorfidWarning; greyscale is repeated to 3 channels.
* Any missing, corrupt, truncated or unsupported file raises
  :class:`~colorfid.errors.ImageReadError` naming the file.
* **Size limit**: an image with more than :func:`max_pixels` pixels (``$COLORFID_MAX_PIXELS``,
  default :data:`DEFAULT_MAX_PIXELS` = 40 MP) is refused from its header, before a pixel is
  decoded, with :class:`~colorfid.errors.ImageTooLargeError` (a PNG of a few hundred KB can
  declare 8000 x 8000 pixels; the gate holds ~120 bytes per pixel while it measures one image).
  Pillow's own decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``, refusing above ~179 MP)
  still applies beyond that.

:func:`read_header` reads what the header says (size after orientation, orientation, bit depth)
with the same checks, without decoding: the stress sets' validation uses it, so a set's sizes
agree with what :func:`read_image` returns.

:func:`write_image` writes 8-bit PNG/TIFF/JPEG (Pillow; JPEG at quality 95 without chroma
subsampling) and 16-bit PNG/TIFF (OpenCV), atomically (temporary file in the same folder,
fsync, rename). Values are clipped to [0, 1] and rounded to the nearest code value.
"""

from __future__ import annotations

import io as _io
import os
import re
import struct
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps
from torch import Tensor

from ._atomic import atomic_write_bytes
from ._files import env_count
from .icc import cms_to_srgb, float_icc_to_srgb, is_srgb, matrix_shaper, profile_description
from .errors import (
    ColorfidWarning, DTypeError, ImageReadError, ImageTooLargeError, ImageWriteError, RangeError, ShapeError, UsageError,
)

__all__ = ["ImageMeta", "ImageHeader", "read_image", "read_header", "write_image", "max_pixels", "IMAGE_SUFFIXES",
           "DEFAULT_MAX_PIXELS", "MAX_PIXELS_ENV"]

#: File suffixes read and written (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112

#: Pixels per image above which :func:`read_image` / :func:`read_header` refuse a file (40 MP:
#: a 45 MP camera frame needs the knob; the gate's peak memory is ~120 bytes per pixel, ~5 GB here).
DEFAULT_MAX_PIXELS = 40_000_000
#: The environment variable that sets the limit (a positive integer; ``4e7`` style accepted).
MAX_PIXELS_ENV = "COLORFID_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit per image: ``$COLORFID_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        UsageError: the variable is not a positive integer (the message names it).
    """
    return env_count(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, "pixels per image", "60000000")


def _check_pixels(path: Path, w: int, h: int, limit: int | None) -> None:
    limit = max_pixels() if limit is None else int(limit)
    if w * h > limit:
        raise ImageTooLargeError(
            f"{path}: a {w}x{h} image ({w * h:,} pixels) is over the limit of {limit:,} pixels per image "
            f"({MAX_PIXELS_ENV}={limit}); refused from its header, nothing decoded. If you mean it, raise "
            f"the limit (the gate holds ~120 bytes per pixel), or crop / downscale the image"
        )


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says (see :func:`read_header`).

    Attributes:
        width, height: the size :func:`read_image` returns (after EXIF / TIFF orientation).
        orientation: the EXIF / TIFF orientation (1-8; 1 = upright).
        format: Pillow's format name.
    """

    width: int
    height: int
    orientation: int
    format: str | None


def _png_orientation(path: Path) -> int:
    """The orientation in a PNG's eXIf chunk wherever it lies (before or after the pixels),
    found by walking the chunk headers: no pixel is decompressed."""
    with path.open("rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return 1
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return 1
            (length,) = struct.unpack(">I", head[:4])
            kind = head[4:8]
            if kind == b"eXIf":
                data = fh.read(length)
                ex = Image.Exif()
                ex.load(data if data.startswith(b"Exif\0\0") else b"Exif\0\0" + data)
                return _valid_orientation(ex.get(_EXIF_ORIENTATION))
            if kind == b"IEND":
                return 1
            fh.seek(length + 4, 1)


def _valid_orientation(value: Any) -> int:
    try:
        o = int(value or 1)
    except (TypeError, ValueError):
        return 1
    return o if o in range(1, 9) else 1


def _orientation(im: Image.Image, path: Path) -> int:
    """The orientation of an open image: TIFF's own tag 274 (whatever its stored type), a PNG's
    eXIf chunk (also after the pixels), else the EXIF block. A malformed block counts as upright."""
    try:
        if im.format == "TIFF":
            return _valid_orientation(getattr(im, "tag_v2", {}).get(274))
        if im.format == "PNG":
            return _png_orientation(path)
        return _valid_orientation(im.getexif().get(_EXIF_ORIENTATION))
    except Exception:  # a malformed EXIF block must not hide the pixels  # noqa: BLE001
        return 1


def _stored_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as stored in the file, before orientation. Pillow reports a TIFF's size
    already turned by its Orientation tag (recent versions) or not (older ones): the TIFF's own
    ImageWidth / ImageLength tags say what is stored."""
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        w, h = tags.get(256), tags.get(257)
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return im.size


def _open(path: Path) -> Image.Image:
    """``Image.open`` with Pillow's decompression-bomb refusal as colorfid's size error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # colorfid's own limit decides
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow allows"
        limit = max_pixels()
        raise ImageTooLargeError(
            f"{path}: an image of {size} is over the limit of {limit:,} pixels per image ({MAX_PIXELS_ENV}={limit}) "
            f"and over Pillow's decompression-bomb guard (PIL.Image.MAX_IMAGE_PIXELS); refused from its header, "
            "nothing decoded"
        ) from None


def read_header(path: str | os.PathLike[str], *, max_pixels: int | None = None, verify: bool = True) -> ImageHeader:
    """The size (after orientation) and orientation of an image file, from its header.

    The pixel limit is checked first (:class:`ImageTooLargeError`); with ``verify`` the file's
    structure is checked too (PNG chunk CRCs, truncation; Pillow's ``verify``), still without
    decoding pixels.

    Raises:
        ImageTooLargeError: more pixels than ``max_pixels`` (default :func:`max_pixels`);
        ImageReadError: missing, unreadable or corrupt (naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such image file")
    try:
        with _open(p) as im:
            w, h = _stored_size(im)
            if w < 1 or h < 1:
                raise ImageReadError(f"{p}: empty image ({w}x{h})")
            _check_pixels(p, w, h, max_pixels)
            orientation = _orientation(im, p)
            fmt = im.format
            if verify:
                im.verify()
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError) as exc:
        raise ImageReadError(f"{p}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageHeader(width=int(w), height=int(h), orientation=orientation, format=fmt)


@dataclass
class ImageMeta:
    """What :func:`read_image` found in a file and did to it.

    Attributes:
        path: the file read.
        format: Pillow's format name (``"PNG"``, ``"JPEG"``, ``"TIFF"``...).
        width, height: size of the returned tensor (after EXIF orientation).
        mode: the file's pixel layout (Pillow mode, or e.g. ``"RGB;16"`` for 16-bit files).
        bit_depth: bits per sample in the file (8 or 16).
        channels: channels in the file (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA / CMYK).
        had_alpha: an alpha channel was present (and dropped).
        exif_orientation: EXIF orientation tag (1 = none / upright) that was applied.
        icc_profile: description of the embedded ICC profile, ``None`` when there was none.
        icc_converted: the pixels were converted from that profile to sRGB.
        icc_method: ``"ImageCms"``, ``"matrix-shaper-float"`` or ``None``.
        warnings: the ColorfidWarning messages issued while reading.
    """

    path: str
    format: str | None
    width: int
    height: int
    mode: str
    bit_depth: int
    channels: int
    had_alpha: bool = False
    exif_orientation: int = 1
    icc_profile: str | None = None
    icc_converted: bool = False
    icc_method: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON-able)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _warn(meta_warnings: list[str], message: str) -> None:
    meta_warnings.append(message)
    warnings.warn(message, ColorfidWarning, stacklevel=3)


def _bit_depth(im: Image.Image, path: Path) -> int:
    """Bits per sample as stored in the file (Pillow's mode may already be reduced to 8)."""
    if im.mode.startswith("I;16"):
        return 16
    if im.format == "PNG":
        with path.open("rb") as fh:
            head = fh.read(26)
        if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int(head[24])
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        bps = tags.get(258, 8)
        bps = max(bps) if isinstance(bps, (tuple, list)) else int(bps)
        fmt = tags.get(339, 1)  # SampleFormat: 1 uint, 2 int, 3 float
        fmt = fmt[0] if isinstance(fmt, (tuple, list)) else fmt
        if fmt not in (1, None):
            raise ImageReadError(f"{path}: unsupported TIFF sample format {fmt} ({bps}-bit); use 8/16-bit unsigned")
        photometric = tags.get(262, 2)
        if bps > 8 and photometric not in (1, 2):  # BlackIsZero grey, RGB
            raise ImageReadError(
                f"{path}: unsupported {bps}-bit TIFF photometric interpretation {photometric}; "
                "16-bit files must be RGB or grey (black is zero)"
            )
        return int(bps)
    return 8


def _orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation to an (H, W, ...) array: the transforms ImageOps.exif_transpose uses."""
    if orientation == 2:  # mirror horizontal
        return a[:, ::-1]
    if orientation == 3:  # rotate 180
        return a[::-1, ::-1]
    if orientation == 4:  # mirror vertical
        return a[::-1]
    if orientation == 5:  # transpose
        return np.swapaxes(a, 0, 1)
    if orientation == 6:  # rotate 90 clockwise
        return np.rot90(a, k=-1)
    if orientation == 7:  # transverse
        return np.swapaxes(a[::-1, ::-1], 0, 1)
    if orientation == 8:  # rotate 90 counter-clockwise
        return np.rot90(a, k=1)
    return a


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def _decode_pillow(im: Image.Image, path: Path, icc: ImageCms.ImageCmsProfile | None, meta: ImageMeta) -> np.ndarray:
    im.load()
    meta.channels = len(im.getbands())
    if meta.exif_orientation != 1:
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I", "F", "I;32", "LAB", "HSV") or mode.startswith("I;") or mode.startswith("F;"):
        raise ImageReadError(f"{path}: unsupported pixel format (Pillow mode {mode}); use 8/16-bit RGB or grey")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        meta.had_alpha = True
        _warn(meta.warnings, f"{path}: alpha channel dropped (colorfid compares colour only)")
        im = im.convert("RGB" if mode.startswith("RGB") else "L")
        mode = im.mode
    if mode == "RGBX":
        im = im.convert("RGB")
        mode = "RGB"
    if icc is not None:
        space = icc.profile.xcolor_space.strip()
        fits = {"RGB": ("RGB",), "GRAY": ("L",), "CMYK": ("CMYK",)}.get(space, ())
        if mode == "L" and space == "RGB":
            im, mode = im.convert("RGB"), "RGB"
            fits = ("RGB",)
        if mode in fits:
            try:
                im = cms_to_srgb(im, icc)
                mode = "RGB"
                meta.icc_converted, meta.icc_method = True, "ImageCms"
            except ImageCms.PyCMSError as exc:
                _warn(meta.warnings, f"{path}: ICC profile {meta.icc_profile!r} could not be applied ({exc}); pixels taken as sRGB")
        else:
            _warn(meta.warnings, f"{path}: ICC profile {meta.icc_profile!r} ({space}) does not fit the {mode} pixels; ignored")
    if mode == "CMYK":
        _warn(meta.warnings, f"{path}: CMYK without a usable ICC profile converted naively (Pillow); colours are approximate")
    if mode not in ("RGB", "L"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.dtype != np.uint8:
        raise ImageReadError(f"{path}: unexpected decoded dtype {arr.dtype} for mode {im.mode}")
    return arr.astype(np.float32) / 255.0


def _without_orientation(data: bytes) -> bytes:
    """The file's bytes with its orientation neutralised (PNG eXIf chunk dropped, TIFF tag 274 set
    to 1), so that OpenCV returns the pixels in stored order whatever its version does with
    orientation (OpenCV 5 applies the TIFF tag itself); colorfid then applies it once."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        out, pos = [data[:8]], 8
        while pos + 8 <= len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            end = pos + 12 + length
            if data[pos + 4 : pos + 8] != b"eXIf":
                out.append(data[pos:end])
            pos = end
        out.append(data[pos:])
        return b"".join(out)
    if data[:4] in (b"II*\0", b"MM\0*"):
        bo = "<" if data[:2] == b"II" else ">"
        (ifd,) = struct.unpack(bo + "I", data[4:8])
        (count,) = struct.unpack(bo + "H", data[ifd : ifd + 2])
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, typ, n = struct.unpack(bo + "HHI", data[entry : entry + 8])
            if tag == 274 and n == 1:
                # the value sits in the entry itself for every integer type: BYTE, SHORT, LONG, SBYTE,
                # SSHORT, SLONG (1, 3, 4, 6, 8, 9); OpenCV applies the tag whatever its type
                fmt = {1: "B", 6: "b", 3: "H", 8: "h", 4: "I", 9: "i"}.get(typ)
                if fmt is None:
                    return data
                buf = bytearray(data)
                size = struct.calcsize(fmt)
                buf[entry + 8 : entry + 8 + size] = struct.pack(bo + fmt, 1)
                return bytes(buf)
    return data


def _decode_cv2(path: Path, icc: ImageCms.ImageCmsProfile | None, icc_bytes: bytes | None, meta: ImageMeta) -> np.ndarray:
    import cv2

    raw = path.read_bytes()
    if meta.exif_orientation != 1:
        raw = _without_orientation(raw)
    arr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{path}: OpenCV could not decode this {meta.bit_depth}-bit file (corrupt or truncated?)")
    if arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype == np.uint8:
        scale = 255.0
    else:
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype}; use 8/16-bit unsigned")
    if arr.ndim == 2:
        arr = arr[..., None]
    ch = arr.shape[2]
    meta.channels = ch
    if ch in (2, 4):
        meta.had_alpha = True
        _warn(meta.warnings, f"{path}: alpha channel dropped (colorfid compares colour only)")
        arr = arr[..., : ch - 1]
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]  # OpenCV's BGR -> RGB
    elif arr.shape[2] != 1:
        raise ImageReadError(f"{path}: unsupported channel count {ch}")
    arr = _orient_array(arr, meta.exif_orientation)
    out = np.ascontiguousarray(arr).astype(np.float64) / scale
    if icc is not None:
        space = icc.profile.xcolor_space.strip()
        shaper = matrix_shaper(icc, icc_bytes or b"") if space == "RGB" else None
        if shaper is not None:
            if out.shape[2] == 1:
                out = np.repeat(out, 3, axis=2)
            out = float_icc_to_srgb(out, shaper)
            meta.icc_converted, meta.icc_method = True, "matrix-shaper-float"
        elif (space == "RGB" and out.shape[2] in (1, 3)) or (space == "GRAY" and out.shape[2] == 1):
            _warn(meta.warnings, f"{path}: {meta.bit_depth}-bit image with LUT-based ICC profile {meta.icc_profile!r}: converted at 8-bit precision")
            mode = "L" if out.shape[2] == 1 and space == "GRAY" else "RGB"
            src = out[..., 0] if mode == "L" else (np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out)
            im8 = Image.fromarray(np.clip(np.rint(src * 255.0), 0, 255).astype(np.uint8), mode)
            try:
                out = np.asarray(cms_to_srgb(im8, icc)).astype(np.float64) / 255.0
                meta.icc_converted, meta.icc_method = True, "ImageCms"
            except ImageCms.PyCMSError as exc:
                _warn(meta.warnings, f"{path}: ICC profile {meta.icc_profile!r} could not be applied ({exc}); pixels taken as sRGB")
        else:
            _warn(meta.warnings, f"{path}: ICC profile {meta.icc_profile!r} ({space}) does not fit the pixels; ignored")
    return out.astype(np.float32)


def read_image(
    path: str | os.PathLike[str], *, with_meta: bool = False, max_pixels: int | None = None
) -> Tensor | tuple[Tensor, ImageMeta]:
    """Read an image file as a ``(3, H, W)`` float32 tensor of sRGB values in [0, 1].

    See the module docstring for bit depths, EXIF orientation, ICC conversion, alpha and the
    size limit.

    Args:
        path: PNG, JPEG or TIFF (any format Pillow opens at 8 bits also works).
        with_meta: also return an :class:`ImageMeta`.
        max_pixels: the pixel limit for this call (default :func:`max_pixels`).

    Raises:
        ImageTooLargeError: more pixels than the limit (checked from the header, nothing decoded).
        ImageReadError: missing, unreadable, corrupt, truncated or unsupported file (the
            message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such image file")
    meta_warnings: list[str] = []
    try:
        with _open(p) as im:
            _check_pixels(p, *_stored_size(im), max_pixels)
            bits = _bit_depth(im, p)
            if bits not in (1, 2, 4, 8, 16):
                raise ImageReadError(f"{p}: unsupported bit depth {bits}; colorfid reads 8- and 16-bit images")
            orientation = _orientation(im, p)
            meta = ImageMeta(
                path=str(p), format=im.format, width=0, height=0,
                mode=im.mode if bits <= 8 else ("RGB;16" if len(im.getbands()) >= 3 else "L;16"),
                bit_depth=16 if bits > 8 else 8, channels=len(im.getbands()),
                exif_orientation=orientation, warnings=meta_warnings,
            )
            icc_bytes = im.info.get("icc_profile") or None
            icc = None
            if icc_bytes:
                try:
                    icc = ImageCms.ImageCmsProfile(_io.BytesIO(icc_bytes))
                except (ImageCms.PyCMSError, OSError, ValueError) as exc:
                    _warn(meta_warnings, f"{p}: embedded ICC profile is unreadable ({exc}); pixels taken as sRGB")
                else:
                    meta.icc_profile = profile_description(icc)
                    if is_srgb(meta.icc_profile):
                        icc = None
            if bits > 8:
                arr = _decode_cv2(p, icc, icc_bytes, meta)
            else:
                arr = _decode_pillow(im, p, icc, meta)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: refused: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError, MemoryError) as exc:
        raise ImageReadError(f"{p}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    meta.height, meta.width = int(tensor.shape[1]), int(tensor.shape[2])
    return (tensor, meta) if with_meta else tensor


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        raise ImageWriteError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc}") from exc


#: Pixels quantised per step of :func:`write_image` (its float64 temporaries stay this small).
_QUANT_PIXELS = 1 << 20


def _quantize(t: Tensor, bits: int) -> np.ndarray:
    """(C, H, W) floats -> (H, W, C) uint8/uint16 code values: clip to [0, 1], scale, round half up,
    all in float64, a band of rows at a time (memory: the output plus one band)."""
    c, h, w = t.shape
    maxval = 255 if bits == 8 else 65535
    out = np.empty((h, w, c), dtype=np.uint8 if bits == 8 else np.uint16)
    rows = max(1, _QUANT_PIXELS // w)
    for r0 in range(0, h, rows):
        band = t[:, r0 : r0 + rows].to(torch.float64, copy=True).clamp_(0.0, 1.0).mul_(maxval).add_(0.5).floor_()
        out[r0 : r0 + rows] = band.numpy().transpose(1, 2, 0)
    return out


def write_image(
    path: str | os.PathLike[str], tensor: Tensor, *, bits: int = 8, quality: int = 95
) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, H, W)``, ``(H, W)``) float image in [0, 1] to a file, atomically.

    Args:
        path: ``.png``, ``.tif``/``.tiff`` (8 or 16 bits) or ``.jpg``/``.jpeg`` (8 bits).
        tensor: float values, sRGB-encoded; clipped to [0, 1] then rounded to the nearest of
            ``2**bits - 1`` code values. Non-finite values raise RangeError.
        bits: 8 or 16.
        quality: JPEG quality (4:4:4, no chroma subsampling).

    Returns:
        The path written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise UsageError(f"cannot write {p}: unknown image suffix {suffix!r}; known: {', '.join(IMAGE_SUFFIXES)}")
    if bits not in (8, 16):
        raise UsageError(f"cannot write {p}: bits must be 8 or 16, got {bits}")
    if bits == 16 and suffix in (".jpg", ".jpeg"):
        raise UsageError(f"cannot write {p}: JPEG is 8-bit only; use .png or .tif for 16 bits")
    if not isinstance(tensor, Tensor):
        raise DTypeError(f"write_image expects a torch.Tensor, got {type(tensor).__name__} (for {p})")
    if not tensor.is_floating_point():
        raise DTypeError(f"write_image expects a float tensor in [0, 1], got {tensor.dtype} (for {p})")
    t = tensor.detach().to("cpu")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3) or t.shape[1] == 0 or t.shape[2] == 0:
        raise ShapeError(f"write_image expects (3, H, W), (1, H, W) or (H, W), got {tuple(tensor.shape)} (for {p})")
    finite = torch.isfinite(t)
    if not finite.all():
        raise RangeError(f"cannot write {p}: the image has {int((~finite).sum())} non-finite values")
    del finite
    q = _quantize(t, bits)
    if bits == 8:
        arr = q
        im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")
        buf = _io.BytesIO()
        if suffix == ".png":
            im.save(buf, format="PNG")
        elif suffix in (".tif", ".tiff"):
            im.save(buf, format="TIFF")
        else:
            im.save(buf, format="JPEG", quality=int(quality), subsampling=0)
        data = buf.getvalue()
    else:
        import cv2

        arr = q
        if arr.shape[2] == 3:
            arr = np.ascontiguousarray(arr[..., ::-1])  # RGB -> OpenCV's BGR
        else:
            arr = np.ascontiguousarray(arr[..., 0])
        ok, enc = cv2.imencode(".png" if suffix == ".png" else ".tiff", arr)
        if not ok:
            raise ImageWriteError(f"cannot write {p}: OpenCV failed to encode a 16-bit {suffix} image")
        data = enc.tobytes()
    _atomic_write(p, data)
    return p
