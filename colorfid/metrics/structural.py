"""PSNR, SSIM and MS-SSIM: batched ``(..., 3, H, W)``, differentiable, with their constants.

* PSNR = 10 log10(L² / MSE) in dB, L = ``data_range``.
* SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004, eq. 13) under a normalised
  Gaussian window of :data:`WIN_SIZE` taps, sigma :data:`SIGMA`, C1 = (K1 L)², C2 = (K2 L)²,
  population covariance; equal to scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)`` on the valid region. Masked SSIM by normalised
  convolution (Knutsson & Westin 1993).
* MS-SSIM (Wang, Simoncelli & Bovik, Asilomar 2003) over :data:`MS_SSIM_WEIGHTS`.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._layout import chunk_pixels
from .._tensors import reduce
from ..errors import ShapeError, UsageError
from ._checks import check_mask, pair_batched

__all__ = ["WIN_SIZE", "SIGMA", "K1", "K2", "MS_SSIM_WEIGHTS", "psnr", "psnr_from_mse", "gaussian_window",
           "ssim_terms", "ssim_planes", "ssim_map", "ssim", "ms_ssim"]


#: SSIM's Gaussian window (taps, sigma) and constants K1, K2 (Wang et al. 2004).
WIN_SIZE = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
#: MS-SSIM scale weights (Wang, Simoncelli & Bovik 2003, Table / eq. 7).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_FLOOR = 1e-4


def psnr_from_mse(mse: Tensor, data_range: float) -> Tensor:
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    mask: Tensor | None = None,
    per_channel: bool = False,
    reduction: Literal["none", "mean", "sum"] = "none",
) -> Tensor:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range² / MSE).

    MSE is the (weighted) mean of (pred - target)² over the three channels and the masked pixels
    of each image -- ``skimage.metrics.peak_signal_noise_ratio`` on one image. ``per_channel``
    gives one value per channel (last dim 3). Images ``(..., 3, H, W)``; result shape ``(...)``
    (``(..., 3)`` per channel) with ``reduction="none"``. Values are not range-checked
    (``data_range`` states the signal's range). ``inf`` for identical images, NaN for an empty
    mask. Differentiable. Computed in the inputs' dtype (float32 for half precisions).
    """
    pred, target, dtype = pair_batched(pred, target, "psnr")
    mask = check_mask(mask, target.shape[:-3] + target.shape[-2:], "psnr")
    sq = (pred - target) ** 2
    if mask is None:
        mse = sq.mean(dim=(-2, -1)) if per_channel else sq.mean(dim=(-3, -2, -1))
    else:
        w = mask.to(sq.dtype).unsqueeze(-3)
        sel = w > 0
        num = torch.where(sel, sq * w, torch.zeros_like(sq)).sum(dim=(-2, -1))
        den = w.sum(dim=(-2, -1))
        if per_channel:
            mse = num / den
        else:
            mse = num.sum(dim=-1) / (3.0 * den[..., 0])
    out = psnr_from_mse(mse, data_range)
    return reduce(out, reduction, "psnr").to(dtype)


def gaussian_window(win_size: int, sigma: float) -> list[float]:
    # scipy.ndimage's kernel: exp(-x² / (2 sigma²)), x = -r..r, normalised to sum 1 (float64).
    r = win_size // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).tolist()


def blur_valid(x: Tensor, g: list[float]) -> Tensor:
    """Separable 'valid' filtering of the last two dims by ``g``: (..., H, W) -> (..., H - k + 1, W - k + 1).

    Written as k shifted multiply-adds per axis (memory-bound, several times faster than a
    grouped ``conv2d`` on CPU for an 11-tap kernel, and differentiable).
    """
    k = len(g)
    ho, wo = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    y = x[..., 0:ho, :] * g[0]
    for i in range(1, k):
        y = y.add_(x[..., i : i + ho, :], alpha=g[i])
    z = y[..., 0:wo] * g[0]
    for i in range(1, k):
        z = z.add_(y[..., i : i + wo], alpha=g[i])
    return z


def ssim_check(pred: Tensor, win_size: int, sigma: float, func: str) -> None:
    if win_size < 1 or win_size % 2 != 1:
        raise UsageError(f"{func}: win_size must be a positive odd integer, got {win_size}")
    if not sigma > 0:
        raise UsageError(f"{func}: sigma must be > 0, got {sigma}")
    h, w = pred.shape[-2:]
    if h < win_size or w < win_size:
        raise ShapeError(f"{func}: images of shape {tuple(pred.shape)} are smaller than the {win_size}x{win_size} window")


def ssim_terms(x: Tensor, y: Tensor, m: Tensor | None, g: list[float], c1: float, c2: float) -> Tensor:
    """SSIM map (Wang et al. 2004, eq. 13) of planes (P, H, W), valid region only.

    Moments are taken about a per-plane constant (the plane's mean, no gradient) and the
    constant is added back to the local means: mathematically the same SSIM, but the
    variances E[x²] - E[x]² no longer cancel catastrophically in float32 on flat regions.
    """
    if m is None:
        cx = x.detach().mean(dim=(-2, -1), keepdim=True)
        cy = y.detach().mean(dim=(-2, -1), keepdim=True)
        x, y = x - cx, y - cy
        # SSIM needs σx² + σy² only as a sum: blur x² + y² once (four moment maps, not five).
        ux, uy, uss, uxy = blur_valid(torch.stack([x, y, x * x + y * y, x * y], dim=1), g).unbind(1)
        return _ssim_formula(ux, uy, uss - ux * ux - uy * uy, uxy - ux * uy, cx, cy, c1, c2)
    else:
        # Normalised convolution (Knutsson & Westin 1993): local moments weighted by g * m,
        # renormalised by (g * m); masked-out pixels are zeroed (so NaN there cannot leak).
        sel = m > 0
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        m = torch.where(sel, m, zero)
        n = m.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
        cx = (torch.where(sel, x, zero) * m).detach().sum(dim=(-2, -1), keepdim=True) / n
        cy = (torch.where(sel, y, zero) * m).detach().sum(dim=(-2, -1), keepdim=True) / n
        x = torch.where(sel, x - cx, zero)
        y = torch.where(sel, y - cy, zero)
        mx, my = m * x, m * y
        den, sx, sy, sxx, syy, sxy = blur_valid(torch.stack([m, mx, my, mx * x, my * y, mx * y], dim=1), g).unbind(1)
        den = torch.where(den > 0, den, torch.ones((), dtype=den.dtype, device=den.device))
        ux, uy, uxx, uyy, uxy = (v / den for v in (sx, sy, sxx, syy, sxy))
    return _ssim_formula(ux, uy, (uxx - ux * ux) + (uyy - uy * uy), uxy - ux * uy, cx, cy, c1, c2)


def _ssim_formula(ux: Tensor, uy: Tensor, v_sum: Tensor, vxy: Tensor, cx: Tensor, cy: Tensor, c1: float, c2: float) -> Tensor:
    """Wang et al. 2004, eq. 13, from the local means about (cx, cy), σx² + σy² and σxy."""
    ux, uy = ux + cx, uy + cy
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = v_sum + c2
    return (a1 * a2) / (b1 * b2)


#: Output pixels (per plane) per strip of rows in :func:`ssim` on the CPU: the moment planes of a
#: strip stay cache-resident and memory stays bounded (GPUs: ``_layout.DEVICE_CHUNK``).
_SSIM_STRIP = 1 << 14


def ssim_planes(
    x: Tensor, y: Tensor, m: Tensor | None, win_size: int, sigma: float, c1: float, c2: float, work: torch.dtype
) -> Tensor:
    """Mean SSIM of each plane (P, H, W) under the weights ``m`` (None: all 1), in strips of
    output rows, each strip converted to ``work``."""
    h, w = x.shape[-2:]
    g = gaussian_window(win_size, sigma)
    r = win_size // 2
    h_out = h - 2 * r
    num = torch.zeros(x.shape[0], dtype=work, device=x.device)
    den = torch.zeros_like(num)
    zero = torch.zeros((), dtype=work, device=x.device)
    rows = max(1, chunk_pixels(x.device, _SSIM_STRIP) // max(w, 1))
    for r0 in range(0, h_out, rows):  # output rows r0..r1 need input rows r0..r1 + 2r
        r1 = min(r0 + rows, h_out)
        ms = None if m is None else m[:, r0 : r1 + 2 * r].to(work)
        s = ssim_terms(x[:, r0 : r1 + 2 * r].to(work), y[:, r0 : r1 + 2 * r].to(work), ms, g, c1, c2)
        if ms is None:
            num = num + s.sum(dim=(-2, -1))
            den = den + s.shape[-2] * s.shape[-1]
        else:
            mc = ms[:, r:-r or None, r : w - r]
            num = num + torch.where(mc > 0, s * mc, zero).sum(dim=(-2, -1))
            den = den + mc.sum(dim=(-2, -1))
    return num / den


def ssim_map(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = WIN_SIZE,
    sigma: float = SIGMA,
    k1: float = K1,
    k2: float = K2,
) -> Tensor:
    """Per-channel SSIM map of the valid region: shape ``(..., 3, H - 2r, W - 2r)``, r = win_size // 2.

    SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), C1 = (k1 L)²,
    C2 = (k2 L)², L = ``data_range`` (Wang, Bovik, Sheikh & Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP 13(4), 2004), with
    local moments under a normalised Gaussian window (population covariance). Position (i, j)
    of the map is the window centred on pixel (i + r, j + r); the border pixels closer than r to
    an edge have no full window and no map value (scikit-image computes them with reflected
    borders and then crops them away, so the retained values are identical). Differentiable.
    """
    pred, target, dtype = pair_batched(pred, target, "ssim_map")
    ssim_check(pred, win_size, sigma, "ssim_map")
    lead, (h, w) = pred.shape[:-3], pred.shape[-2:]
    g = gaussian_window(win_size, sigma)
    s = ssim_terms(pred.reshape(-1, h, w), target.reshape(-1, h, w), None, g, (k1 * data_range) ** 2, (k2 * data_range) ** 2)
    return s.reshape(*lead, 3, s.shape[-2], s.shape[-1]).to(dtype)


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    data_range: float = 1.0,
    reduction: Literal["none", "mean", "sum"] = "none",
    win_size: int = WIN_SIZE,
    sigma: float = SIGMA,
    k1: float = K1,
    k2: float = K2,
) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) of each image, averaged over RGB channels.

    Defaults follow Wang et al.: Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03,
    population covariance, ``data_range`` L = 1 for [0, 1] images. Unmasked, the value equals
    ``skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=0)``: the mean of the SSIM map over
    the valid region (pixels at least r = 5 from every edge), averaged over the channels
    (parity <= 1e-12 in float64, tests/test_metrics.py).

    ``mask`` (``(..., H, W)``, bool or float weights): *masked SSIM by normalised convolution*
    (Knutsson & Westin 1993). Local means and (co)variances use the window weights g * m
    renormalised by (g * m), so masked-out pixels contribute nothing; the map is then averaged
    with weights m over the valid region. An all-ones mask gives the unmasked value; an empty
    mask (within the valid region) gives NaN.

    Images ``(..., 3, H, W)`` with H, W >= ``win_size`` (else :class:`~colorfid.errors.ShapeError`);
    returns shape ``(...)`` for ``reduction="none"``, a scalar for ``"mean"``/``"sum"``. In
    [-1, 1], 1 for identical images. Differentiable: a loss is ``1 - ssim(pred, target,
    reduction="mean")``. Values are not range-checked. Computed in the inputs' dtype (float32
    for half precisions).
    """
    pred, target, dtype = pair_batched(pred, target, "ssim")
    ssim_check(pred, win_size, sigma, "ssim")
    mask = check_mask(mask, target.shape[:-3] + target.shape[-2:], "ssim")
    lead, (h, w) = pred.shape[:-3], pred.shape[-2:]
    m = None if mask is None else mask.to(pred.dtype).unsqueeze(-3).expand(*lead, 3, h, w).reshape(-1, h, w)
    per_plane = ssim_planes(pred.reshape(-1, h, w), target.reshape(-1, h, w), m, win_size, sigma,
                             (k1 * data_range) ** 2, (k2 * data_range) ** 2, pred.dtype)
    out = per_plane.reshape(*lead, 3).mean(dim=-1)
    return reduce(out, reduction, "ssim").to(dtype)


def ms_ssim(pred: Tensor, target: Tensor, *, data_range: float = 1.0,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> Tensor:
    """Multi-scale SSIM of each image (Wang, Simoncelli & Bovik, Asilomar 2003), shape (...).

    ``prod_j cs_j ** w_j`` over scales j = 1..M-1 times ``ssim_M ** w_M`` at the coarsest,
    per channel, averaged over the channels; between scales a 2x2 average pool (``ceil_mode``,
    so odd sizes keep their last row/column). SSIM comes from :func:`colorfid.metrics.ssim_map`
    (Gaussian window 11, sigma 1.5, K = (0.01, 0.03)); the contrast-structure factor cs is the
    same map with the luminance comparison neutralised (C1 -> 1e8, which makes
    (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) = 1 to within 1e-8). Factors are floored at
    1e-4 before the fractional powers (pytorch-msssim clips at 0, whose derivative is infinite),
    so the gradient stays finite. Needs H, W >= 161 for 5 scales (else ShapeError).
    Differentiable; matches pytorch-msssim's ``ms_ssim`` on even sizes (tests/test_losses.py).
    """
    n = len(weights)
    need = (WIN_SIZE - 1) * 2 ** (n - 1) + 1
    h, w_ = pred.shape[-2:]
    if h < need or w_ < need:
        raise ShapeError(
            f"ms_ssim: images of shape {tuple(pred.shape)} are too small for {n} scales with an "
            f"{WIN_SIZE}x{WIN_SIZE} window (need H, W >= {need}); use ssim_kind='ssim'"
        )
    lead = pred.shape[:-3]
    x = pred.reshape(-1, 3, h, w_)
    y = target.reshape(-1, 3, h, w_)
    log_total = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
    for j, wj in enumerate(weights):
        last = j == n - 1
        k1 = K1 if last else 1e4
        s = ssim_map(x, y, data_range=data_range, k1=k1).mean(dim=(-2, -1))
        log_total = log_total + wj * torch.log(s.clamp_min(_MS_SSIM_FLOOR))
        if not last:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    return torch.exp(log_total).mean(dim=-1).reshape(lead)

