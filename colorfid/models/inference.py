"""Run an image-to-image model on images of any size, in bounded memory.

:func:`run_model` runs the whole image in one forward pass when it fits the pixel budget
(``max_pixels``) and otherwise splits it into overlapping tiles, runs them in batches and
blends them with feathered (linear-ramp) weights. The blend is exact for models whose
receptive field is narrower than the dead margin of the ramp (``overlap // 4`` pixels on each
inner edge); for NAFNet, whose channel attention pools globally, tiles see different
statistics than the whole image, which is why the whole image is preferred when it fits and
why :class:`~colorfid.models.nafnet.NAFNetLocal` (TLC) narrows the gap.

Why the defaults (``python bench/bench_inference.py --psnr``: width-32 SIDD NAFNet, random
weights with beta/gamma ~ N(0, sigma), 1024 x 768 synthetic room image, CPU float32): PSNR between
tiled (tile 512, overlap 32) and whole-image outputs = 73.7 dB at sigma 0.1 (78.2 dB with TLC)
and 48.4 dB at sigma 0.5, a harsher network (54.7 dB with TLC); the target is >= 45 dB. At
sigma 0.5, tile 768 gives 58.1 dB (TLC 59.8 dB) and TLC with overlap 96 gives 60.3 dB (plain
NAFNet's error is a per-tile statistic, so overlap barely helps it: 48.5 dB). 512 / 32 is kept as
the default for memory (working memory grows with the tile area): 3300 x 2200 through width 32
on CPU peaks at 1.13 GiB RSS. Measure a trained checkpoint with
``--psnr --checkpoint X.pth --image photo.jpg``.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import ColorfidWarning, DTypeError, ShapeError, UsageError

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "DEFAULT_MAX_PIXELS",
    "select_device",
    "tile_starts",
    "feather_ramp",
    "run_model",
]

#: Tile side in pixels used when an image exceeds the pixel budget (a multiple of 16, NAFNet's
#: padding unit, so tiles are never zero-padded inside the network).
DEFAULT_TILE = 512
#: Overlap in pixels between neighbouring tiles.
DEFAULT_OVERLAP = 32
#: Largest image (H * W pixels) run in one forward pass when ``tile`` is None.
DEFAULT_MAX_PIXELS = 1024 * 1024


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given (checked), else cuda, then mps, then cpu.

    Raises:
        UsageError: the requested device type is not available here (lists those that are).
    """
    mps = getattr(torch.backends, "mps", None)
    available = ["cpu"]
    if torch.cuda.is_available():
        available.insert(0, "cuda")
    if mps is not None and mps.is_available():
        available.insert(len(available) - 1, "mps")
    if device is None:
        return torch.device(available[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"unknown device {device!r}; available: {', '.join(available)}") from exc
    if dev.type not in available:
        raise UsageError(f"device {str(dev)!r} is not available on this machine; available: {', '.join(available)}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"device {str(dev)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with overlaps >= ``overlap``.

    The first tile starts at 0 and the last ends at ``length``; the tiles in between are spread
    evenly, so every overlap is at least ``overlap`` and the overlaps differ by at most a pixel.
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    return [round(i * span / (n - 1)) for i in range(n)]


def feather_ramp(size: int, overlap: int, lead: bool, trail: bool, dtype: torch.dtype = torch.float32) -> Tensor:
    """1-D blending weights of a tile: 1 inside, linear ramps on the sides that meet a neighbour.

    On an inner side (``lead`` = the start, ``trail`` = the end) the ``overlap // 4`` outermost
    pixels get weight 0 (where tile-border effects are largest), then the weight rises linearly
    to 1 over the next ``overlap - 2 * (overlap // 4)`` pixels. Two neighbours overlapping by
    ``overlap`` pixels have complementary ramps, and every pixel keeps a positive total weight.
    """
    w = torch.ones(size, dtype=torch.float64)
    if overlap > 0:
        margin = overlap // 4
        width = max(overlap - 2 * margin, 1)
        d = torch.arange(size, dtype=torch.float64)
        ramp = ((d - margin + 0.5) / width).clamp(0.0, 1.0)
        if lead:
            w = w * ramp
        if trail:
            w = w * ramp.flip(0)
    return w.to(dtype)


def _resolve_amp(amp: bool | str | None, dev: torch.device) -> torch.dtype | None:
    if amp is None or amp is False:
        return None
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if isinstance(amp, str) and amp.lower() not in names:
        raise UsageError(f"unknown amp {amp!r}; known: True, False, None, {', '.join(sorted(names))}")
    if dev.type not in ("cuda", "mps"):
        warnings.warn(
            f"amp={amp!r} ignored: autocast is used on GPUs only; running float32 on {dev.type}",
            ColorfidWarning,
            stacklevel=3,
        )
        return None
    if isinstance(amp, str):
        return names[amp.lower()]
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_model(
    model: nn.Module,
    image: Tensor,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    amp: bool | str | None = None,
    progress: bool | None = None,
    batch_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    pad_multiple: int | None = None,
) -> Tensor:
    """Run an image-to-image ``model`` on ``image`` of any size; output on CPU, input's shape.

    Args:
        model: maps (B, C, H, W) to (B, C, H, W). It is moved to ``device`` (in place, as
            ``Module.to`` does) and run in eval mode under ``torch.inference_mode``; its
            train/eval mode is restored afterwards.
        image: (C, H, W) or (N, C, H, W) float tensor; sRGB in [0, 1] by colorfid's convention
            (not clamped: out-of-range model outputs stay visible to the health checks).
        tile: ``None`` (default): the whole image in one pass when ``H * W <= max_pixels``,
            else tiles of :data:`DEFAULT_TILE`. ``0``: always whole. A positive int: tiles of
            that side whenever the image is larger (rounded down to a multiple of the model's
            ``padder_size`` when it has one, e.g. 16 for NAFNet).
        overlap: pixels shared by neighbouring tiles (< tile); blended with :func:`feather_ramp`.
        device: ``None`` = :func:`select_device` (cuda, mps, cpu).
        amp: autocast on GPU: ``True`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"``;
            ``None``/``False`` = float32. Ignored with a warning on CPU.
        progress: tqdm bar over tiles; ``None`` = shown for tiled runs on a terminal only.
        batch_size: tiles per forward pass; default 1 on CPU (bounded memory), on GPUs as many
            as fit ``max_pixels`` (at most 8).
        max_pixels: pixel budget of one forward pass (whole image, or a batch of tiles).
        pad_multiple: replicate-pad each model input right/bottom to this multiple and crop
            the output (for models that need it; NAFNet pads itself, so None).

    Returns:
        Tensor of the input's shape and dtype, on CPU.
    """
    if not isinstance(image, Tensor):
        raise DTypeError(f"run_model expects a torch.Tensor image, got {type(image).__name__}")
    if image.dim() not in (3, 4):
        raise ShapeError(f"run_model expects (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise DTypeError(
            f"run_model expects a float image in [0, 1], got {image.dtype}; convert with colorfid.color.to_float"
        )
    single = image.dim() == 3
    batch = image.unsqueeze(0) if single else image
    n, c, h, w = batch.shape
    if h == 0 or w == 0:
        raise ShapeError(f"run_model got an empty image of shape {tuple(image.shape)}")
    if overlap < 0:
        raise UsageError(f"overlap must be >= 0, got {overlap}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    padder = int(getattr(model, "padder_size", 1) or 1)
    if tile is None:
        tile_side = 0 if h * w <= max_pixels else DEFAULT_TILE
    else:
        tile_side = int(tile)
        if tile_side < 0:
            raise UsageError(f"tile must be None, 0 (whole image) or a positive size, got {tile}")
    if tile_side > 0:
        if padder > 1 and tile_side >= padder:
            tile_side -= tile_side % padder
        if overlap >= tile_side:
            raise UsageError(f"overlap ({overlap}) must be smaller than tile ({tile_side})")
        if h <= tile_side and w <= tile_side:
            tile_side = 0

    dev = select_device(device)
    amp_dtype = _resolve_amp(amp, dev)
    mdtype = _model_dtype(model) or torch.float32
    if any(p.device != dev for p in model.parameters()) or any(b.device != dev for b in model.buffers()):
        model.to(dev)
    out_dtype = image.dtype
    acc_dtype = torch.float64 if out_dtype == torch.float64 else torch.float32

    def forward(x: Tensor) -> Tensor:
        x = x.to(device=dev, dtype=mdtype, non_blocking=True)
        th, tw = x.shape[-2:]
        if pad_multiple and pad_multiple > 1:
            ph, pw = (-th) % pad_multiple, (-tw) % pad_multiple
            if ph or pw:
                x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        ctx = torch.autocast(device_type=dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with ctx:
            y = model(x)
        if not isinstance(y, Tensor) or y.shape[:-2] != x.shape[:-2] or y.shape[-2:] != x.shape[-2:]:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(f"run_model needs a model whose output has its input's shape; input {tuple(x.shape)}, output {got}")
        return y[..., :th, :tw].to(device="cpu", dtype=acc_dtype)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if tile_side == 0:
                per_pass = max(1, max_pixels // (h * w))
                outs = [forward(batch[i : i + per_pass]) for i in range(0, n, per_pass)]
                result = torch.cat(outs, 0)
            else:
                result = _run_tiled(forward, batch, tile_side, overlap, dev, batch_size, max_pixels, progress, acc_dtype)
    finally:
        model.train(was_training)
    result = result.to(out_dtype)
    return result[0] if single else result


def _run_tiled(forward, batch: Tensor, tile: int, overlap: int, dev: torch.device, batch_size: int | None,
               max_pixels: int, progress: bool | None, acc_dtype: torch.dtype) -> Tensor:
    from tqdm.auto import tqdm

    n, c, h, w = batch.shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    positions = [(y, x) for y in ys for x in xs]
    if batch_size is None:
        batch_size = 1 if dev.type == "cpu" else max(1, min(8, max_pixels // (th * tw)))
    wy = {y: feather_ramp(th, overlap, y > 0, y + th < h, acc_dtype) for y in ys}
    wx = {x: feather_ramp(tw, overlap, x > 0, x + tw < w, acc_dtype) for x in xs}
    # A tile's weight is wy(row) * wx(column) and the tiles form a grid, so the total weight of a
    # pixel is (sum over tile rows of wy) * (sum over tile columns of wx): two vectors, not a plane.
    wy_total = torch.zeros(h, dtype=torch.float64)
    wx_total = torch.zeros(w, dtype=torch.float64)
    for y in ys:
        wy_total[y : y + th] += wy[y].double()
    for x in xs:
        wx_total[x : x + tw] += wx[x].double()
    disable = (None if progress is None else not progress)
    # Working memory: the output itself (accumulated in place) plus one batch of tiles.
    result = torch.zeros((n, c, h, w), dtype=acc_dtype)
    band = max(1, (1 << 20) // w)
    with tqdm(total=n * len(positions), desc="colorfid tiles", unit="tile", disable=disable, leave=False) as bar:
        for i in range(n):
            acc = result[i]
            img = batch[i]
            for group in _batches(positions, batch_size):
                tiles = torch.stack([img[:, y : y + th, x : x + tw] for y, x in group])
                out = forward(tiles)
                for (y, x), t in zip(group, out):
                    acc[:, y : y + th, x : x + tw] += t * (wy[y][:, None] * wx[x][None, :])
                bar.update(len(group))
            for r0 in range(0, h, band):  # normalise a band of rows at a time
                acc[:, r0 : r0 + band] /= (wy_total[r0 : r0 + band, None] * wx_total[None, :]).to(acc_dtype)
    return result
