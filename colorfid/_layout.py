"""Memory layout and chunking of per-pixel work: where the channels of a tensor lie, how chunks
of pixels are read, and the de-interleave of channels-innermost memory.

No formula lives here. :mod:`colorfid.color` and :mod:`colorfid.difference` hand their per-pixel
maps to these helpers so that eager, no-gradient work runs in cache-sized chunks and reads the
caller's memory in place where it can.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ._select import is_compiling

__all__ = ["CHUNK", "DEVICE_CHUNK", "chunk_pixels", "layout", "deinterleave_index", "deinterleave", "chunked_pairs"]

#: Pixels per chunk of no-gradient per-pixel work on the CPU: temporaries of 256 KiB-512 KiB stay
#: in cache instead of costing a fresh multi-MB allocation (and its page faults) per operation.
CHUNK = 1 << 16
#: The same on other devices (CUDA, MPS): there is no such cache to fit, and every operation of
#: every chunk costs a kernel launch (microseconds), so chunks only bound memory (16-32 MiB
#: temporaries).
DEVICE_CHUNK = 1 << 22


def chunk_pixels(device: torch.device, cpu: int = CHUNK) -> int:
    """Pixels (or output pixels) per chunk of no-gradient work on ``device``: ``cpu`` (default
    :data:`CHUNK`) on the CPU, :data:`DEVICE_CHUNK` elsewhere. Chunking never changes a
    per-pixel value."""
    return cpu if device.type == "cpu" else DEVICE_CHUNK


def layout(x: Tensor, d: int) -> tuple[Tensor, bool]:
    """``x`` around its channel dim ``d`` as ``(lead, n_pix, 3)`` pixels (flag True) when its
    channels are innermost in memory (an ``(H, W, 3)`` array seen as ``(3, H, W)``), else as
    ``(lead, 3, n_pix)`` planes (flag False): a view either way where the memory allows (any
    other layout is copied to planes)."""
    lead, n_pix = math.prod(x.shape[:d]), math.prod(x.shape[d + 1 :])
    last = x.movedim(d, -1)
    if last.is_contiguous():
        return last.reshape(lead, n_pix, 3), True
    return x.reshape(lead, 3, n_pix), False


_INDEX: dict[tuple[int, torch.device], Tensor] = {}


def deinterleave_index(m: int, device: torch.device) -> Tensor:
    """Indices that turn m interleaved 3-vectors (x0 y0 z0 x1 ...) into planes (x0 x1 ... y0 ...)
    (for a gather; cached for full chunks of :data:`CHUNK` pixels)."""
    key = (m, device)
    t = _INDEX.get(key)
    if t is None:
        t = (torch.arange(3, device=device)[:, None] + 3 * torch.arange(m, device=device)[None, :]).reshape(-1)
        if m == CHUNK and not is_compiling():
            _INDEX[key] = t
    return t


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid, one worker): a fork gets its own
_POOL_LOCK = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():  # a forked child inherits no worker thread
            _POOL = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="colorfid-deinterleave"))
        return _POOL[1]


def _split(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[c] = src[:, c]`` for ``src`` (n, 3), ``dst`` (3, n): OpenCV's SIMD ``cv2.split``
    (one pass over ``src``, in place; NumPy's strided copy where OpenCV cannot be imported)."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv-python-headless is a dependency
        np.copyto(dst, src.T)
        return
    n = src.shape[0]
    outs = [dst[c].reshape(n, 1) for c in range(3)]
    got = cv2.split(src.reshape(n, 1, 3), outs)
    for o, g in zip(outs, got):
        if g.ctypes.data != o.ctypes.data:  # OpenCV allocated instead of writing in place
            np.copyto(o, g)


def deinterleave(dst: Tensor, src: Tensor) -> None:
    """``dst`` (3, n) <- ``src`` (n, 3), both contiguous: the transpose, written in place.

    On the CPU through ``cv2.split`` (OpenCV releases the GIL), half the rows on a worker
    thread for large chunks when torch may use two threads; elsewhere (CUDA) a plain ``copy_``.
    """
    n = src.shape[0]
    if dst.device.type != "cpu" or src.dtype not in (torch.float32, torch.float64):
        dst.copy_(src.T)
        return
    d, s = dst.numpy(), src.detach().numpy()
    if n < 1 << 15 or torch.get_num_threads() < 2:
        _split(s, d)
        return
    h = n // 2
    job = _worker().submit(_split, s[h:], d[:, h:])
    _split(s[:h], d[:, :h])
    job.result()


def chunked_pairs(lab1: Tensor, lab2: Tensor, d: int, kernel: Callable[..., None], chunk: int, pad: bool,
                  k: tuple[float, ...]) -> Tensor:
    """Evaluate ``kernel(x0, x1, x2, y0, y1, y2, out, *k)`` (channel planes of two 3-channel
    tensors, ``out`` written in place) over chunks of ``chunk`` pixels; the result has the
    inputs' shape without the channel dim ``d``.

    Planar inputs are passed as views; interleaved ones are de-interleaved chunk by chunk into a
    reused (3, chunk) buffer. ``pad``: every call sees exactly ``chunk`` pixels (a compiled
    kernel's one static shape): the last chunk is zero-padded and written through a scratch row.
    """
    out_shape = [s for i, s in enumerate(lab1.shape) if i != d]
    lead = int(math.prod(lab1.shape[:d]))
    p = int(math.prod(out_shape[d:]))
    xs = [layout(lab1, d), layout(lab2, d)]
    out = torch.empty((lead, p), dtype=lab1.dtype, device=lab1.device)
    bufs = [None, None]
    scratch = None
    for i in range(lead):
        for s in range(0, p, chunk):
            e = min(s + chunk, p)
            n = e - s
            short = pad and n < chunk
            planes: list[Tensor] = []
            for j, (x, interleaved) in enumerate(xs):
                if not interleaved and not short:
                    planes += x[i, :, s:e].unbind(0)
                    continue
                if bufs[j] is None:
                    bufs[j] = torch.empty((3, chunk), dtype=x.dtype, device=x.device)
                buf = bufs[j]
                if interleaved:
                    deinterleave(buf[:, :n], x[i, s:e])
                else:
                    buf[:, :n].copy_(x[i, :, s:e])
                if short:
                    buf[:, n:].zero_()  # (0, 0, 0) pairs: the kernel's value for them is dropped
                planes += (buf if pad else buf[:, :n]).unbind(0)
            if short:
                if scratch is None:
                    scratch = torch.empty(chunk, dtype=out.dtype, device=out.device)
                kernel(*planes, scratch, *k)
                out[i, s:e] = scratch[:n]
            else:
                kernel(*planes, out[i, s:e], *k)
    return out.reshape(out_shape)
