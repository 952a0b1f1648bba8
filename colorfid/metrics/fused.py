"""The fused CPU kernels of :func:`~colorfid.metrics.image_metrics`: its pixel pass and its SSIM,
traced from the very functions of the eager path and compiled once per machine by
``colorfid kernels build`` (:mod:`colorfid._aot`). Float64 on CPU; values equal the eager path
to float rounding. Importing this module registers the two kernels."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _aot
from .._select import below
from ..errors import KernelError
from .pixels import PixelTerms, PixelThresholds, pixel_terms
from .structural import K1, K2, SIGMA, WIN_SIZE, gaussian_window, ssim_terms

__all__ = ["PIXEL_KERNEL", "SSIM_KERNEL", "PIXEL_CHUNK", "SSIM_KERNEL_ROWS", "SOURCES", "kernels_for",
           "metric_kernels", "FusedPixels", "ssim_planes_fused"]

PIXEL_KERNEL = "metrics_pixels_f64"
SSIM_KERNEL = "metrics_ssim11_f64"
#: Pixels per call of the fused pixel kernel (its one static shape; the last chunk is padded).
PIXEL_CHUNK = 1 << 15
#: Output rows per call of the fused SSIM kernel (its width is dynamic, >= WIN_SIZE + 1).
SSIM_KERNEL_ROWS = 32
#: The modules the kernels are traced through (packages: every file in them); their bytes key
#: the kernel files, so an edit never meets a stale kernel.
SOURCES = ("colorfid._heap", "colorfid._layout", "colorfid._select", "colorfid._tensors", "colorfid.color",
           "colorfid.difference", "colorfid.metrics")


class _PixelKernel(torch.nn.Module):
    """Traced: ``x``, ``t`` (3, PIXEL_CHUNK) float64; ``thr`` (5,) float64 = the four
    :class:`~colorfid.metrics.pixels.PixelThresholds` and the number of valid (unpadded) pixels."""

    def forward(self, x: Tensor, t: Tensor, thr: Tensor) -> tuple[Tensor, ...]:
        hc_s, tol, hc_c, floor, n = thr.unbind(0)
        valid = below(torch.arange(x.shape[-1], dtype=x.dtype, device=x.device), n)
        return tuple(pixel_terms(x, t, PixelThresholds(hc_s, tol, hc_c, floor), valid))


#: The SSIM window as Python floats, computed eagerly once (a trace sees constants).
_G = gaussian_window(WIN_SIZE, SIGMA)


def _ssim_strip_sums(x: Tensor, y: Tensor, consts: Tensor) -> Tensor:
    """Per-plane sums of the SSIM map (:func:`~colorfid.metrics.structural.ssim_terms`) over the
    first ``consts[2]`` output rows of a strip (P, rows + WIN_SIZE - 1, W); ``consts[:2]`` = (C1, C2)."""
    c1, c2, n = consts.unbind(0)
    s = ssim_terms(x, y, None, _G, c1, c2)  # type: ignore[arg-type]
    rows = below(torch.arange(s.shape[-2], dtype=s.dtype, device=s.device), n)
    return (s.sum(dim=-1) * rows).sum(dim=-1)


class _SsimKernel(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor, consts: Tensor) -> Tensor:
        return _ssim_strip_sums(x, y, consts)


def _make_pixel_kernel() -> tuple[torch.nn.Module, tuple[Tensor, ...], Any]:
    g = torch.Generator().manual_seed(0)
    n = PIXEL_CHUNK
    x = torch.rand(3, n, dtype=torch.float64, generator=g)
    t = torch.rand(3, n, dtype=torch.float64, generator=g)
    x[:, :64] = x[:, 64:128].mean(dim=0)  # greys, for the grey and zero-chroma branches
    thr = torch.tensor([0.5, 0.02, 40.0, 10.0, n - 100], dtype=torch.float64)
    return _PixelKernel(), (x, t, thr), None


def _make_ssim_kernel() -> tuple[torch.nn.Module, tuple[Tensor, ...], Any]:
    g = torch.Generator().manual_seed(0)
    shape = (3, SSIM_KERNEL_ROWS + WIN_SIZE - 1, 97)
    x = torch.rand(shape, dtype=torch.float64, generator=g)
    y = (x + 0.2 * torch.rand(shape, dtype=torch.float64, generator=g)).clamp(0.0, 1.0)
    consts = torch.tensor([K1**2, K2**2, SSIM_KERNEL_ROWS - 7], dtype=torch.float64)
    w = torch.export.Dim("width", min=WIN_SIZE + 1, max=1 << 20)
    return _SsimKernel(), (x, y, consts), ({2: w}, {2: w}, None)


_aot.register(_aot.KernelSpec(
    PIXEL_KERNEL, "image_metrics per-pixel pass: Lab, CIEDE2000, HSV, chroma, hue, masks, sums; float64",
    _make_pixel_kernel, SOURCES, {"chunk": PIXEL_CHUNK},
))
_aot.register(_aot.KernelSpec(
    SSIM_KERNEL, "image_metrics SSIM strips (11-tap Gaussian, sigma 1.5); float64",
    _make_ssim_kernel, SOURCES, {"rows": SSIM_KERNEL_ROWS},
))


def kernels_for(
    fused: bool | None, dtype: torch.dtype, device: torch.device
) -> tuple[Callable[..., list[Tensor]] | None, Callable[..., list[Tensor]] | None]:
    """(pixel kernel, SSIM kernel) for ``image_metrics(fused=...)``, or (None, None) for eager;
    :class:`~colorfid.errors.KernelError` saying why when ``fused=True`` cannot be served."""
    if fused is False:
        return None, None
    if dtype == torch.float64 and device.type == "cpu":
        px, ss = _aot.get(PIXEL_KERNEL), _aot.get(SSIM_KERNEL)
        if px is not None and ss is not None:
            return px, ss
    if fused:
        ok, why = _aot.supported()
        if dtype != torch.float64 or device.type != "cpu":
            reason = f"the fused kernels serve float64 on CPU, not {str(dtype).replace('torch.', '')} on {device.type}"
        elif not _aot.enabled():
            reason = "the fused kernels are disabled (COLORFID_KERNELS=0)"
        elif not ok:
            reason = why
        else:
            reason = f"the fused kernels are not built in {_aot.kernel_dir()}: run `colorfid kernels build`"
        raise KernelError(f"image_metrics(fused=True): {reason}")
    return None, None


def metric_kernels(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> str:
    """Which path :func:`~colorfid.metrics.image_metrics` takes by default for ``dtype`` on
    ``device``: ``"fused"`` (the kernels of ``colorfid kernels build`` are built for this machine)
    or ``"eager"``."""
    px, _ = kernels_for(None, dtype, torch.device(device))
    return "eager" if px is None else "fused"


class FusedPixels:
    """The fused pixel pass: chunks of :data:`PIXEL_CHUNK` pixels, the last one zero-padded
    (excluded by the count the kernel receives)."""

    step = PIXEL_CHUNK

    def __init__(self, kernel: Callable[..., list[Tensor]]) -> None:
        self.kernel = kernel

    def __call__(self, x: Tensor, t: Tensor, thr: PixelThresholds) -> PixelTerms:
        n = x.shape[-1]
        if n < self.step:
            x, t = (F.pad(v, (0, self.step - n)) for v in (x, t))
        return PixelTerms(*self.kernel(x.contiguous(), t.contiguous(), torch.tensor([*thr, n], dtype=x.dtype)))


def ssim_planes_fused(x: Tensor, y: Tensor, c1: float, c2: float, work: torch.dtype,
                      kernel: Callable[..., list[Tensor]]) -> Tensor:
    """Mean SSIM of each plane (P, H, W) through the SSIM kernel (unmasked, three planes, width
    > WIN_SIZE), in strips of :data:`SSIM_KERNEL_ROWS` output rows; the last strip is zero-padded
    below (excluded by its row count)."""
    h, w = x.shape[-2:]
    r = WIN_SIZE // 2
    h_out = h - 2 * r
    num = torch.zeros(x.shape[0], dtype=work, device=x.device)
    den = torch.zeros_like(num)
    rows = SSIM_KERNEL_ROWS
    consts = [c1, c2, 0.0]
    for r0 in range(0, h_out, rows):
        r1 = min(r0 + rows, h_out)
        xs, ys = x[:, r0 : r1 + 2 * r].to(work), y[:, r0 : r1 + 2 * r].to(work)
        if r1 - r0 < rows:
            xs, ys = (F.pad(v, (0, 0, 0, rows - (r1 - r0))) for v in (xs, ys))
        consts[2] = float(r1 - r0)
        num = num + kernel(xs.contiguous(), ys.contiguous(), torch.tensor(consts, dtype=work))[0]
        den = den + (r1 - r0) * (w - 2 * r)
    return num / den
