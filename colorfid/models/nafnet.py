"""NAFNet: the Nonlinear-Activation-Free Network for image restoration.

Source: L. Chen, X. Chu, X. Zhang, J. Sun, "Simple Baselines for Image Restoration",
ECCV 2022 (arXiv:2204.04676), and its official release megvii-research/NAFNet.
TLC (test-time local converter): X. Chu, L. Chen, C. Chen, X. Lu, "Improving Image
Restoration by Revisiting Global Information Aggregation", ECCV 2022 (arXiv:2112.04491).

Module names and parameter shapes are those of the official release, so official and
BasicSR-trained checkpoints load with ``strict=True`` (the SIDD width-32 configuration
has 664 tensors and 29,159,715 parameters; ``golden/reference/nafnet_width32_keys.txt``
lists them). The behaviour is the published one:

* ``NAFBlock``: ``x = conv3(SCA(SimpleGate(conv2(conv1(norm1(inp))))))``,
  ``y = inp + beta * x``; ``x = conv5(SimpleGate(conv4(norm2(y))))``, ``out = y + gamma * x``,
  with ``beta`` and ``gamma`` of shape (1, c, 1, 1) initialised to zero (each block starts as
  the identity). ``SCA(x) = x * conv1x1(avgpool(x))`` (no sigmoid).
* ``NAFNet``: 3x3 ``intro`` conv, encoder stages (blocks, then a 2x2 stride-2 conv doubling
  channels), middle blocks, decoder stages (1x1 conv without bias doubling channels and
  PixelShuffle(2), add the skip of the same level, blocks), 3x3 ``ending`` conv, global
  residual. The input is zero-padded right/bottom to a multiple of ``2 ** len(encoders)``
  and the output cropped back.

Images are tensors (N, C, H, W); for colorfid's convention C = 3, sRGB-encoded in [0, 1]
(the network itself does not clamp).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ShapeError, UsageError

__all__ = [
    "nafnet_size",
    "nafnet_state_shapes",
    "LayerNorm2d",
    "SimpleGate",
    "LocalAvgPool2d",
    "NAFBlock",
    "NAFNet",
    "NAFNetLocal",
    "nafnet_tlc_kernel_sizes",
]


#: Tensors of one NAFBlock on c channels (name -> shape as a function of c), as NAFBlock builds them
#: with the published expansions (dw_expand = ffn_expand = 2).
_BLOCK = (
    ("conv1.weight", lambda c: (2 * c, c, 1, 1)), ("conv1.bias", lambda c: (2 * c,)),
    ("conv2.weight", lambda c: (2 * c, 1, 3, 3)), ("conv2.bias", lambda c: (2 * c,)),
    ("conv3.weight", lambda c: (c, c, 1, 1)), ("conv3.bias", lambda c: (c,)),
    ("sca.1.weight", lambda c: (c, c, 1, 1)), ("sca.1.bias", lambda c: (c,)),
    ("conv4.weight", lambda c: (2 * c, c, 1, 1)), ("conv4.bias", lambda c: (2 * c,)),
    ("conv5.weight", lambda c: (c, c, 1, 1)), ("conv5.bias", lambda c: (c,)),
    ("norm1.weight", lambda c: (c,)), ("norm1.bias", lambda c: (c,)),
    ("norm2.weight", lambda c: (c,)), ("norm2.bias", lambda c: (c,)),
    ("beta", lambda c: (1, c, 1, 1)), ("gamma", lambda c: (1, c, 1, 1)),
)


def _block_params(c: int) -> int:
    return 7 * c * c + 33 * c  # the sum of _BLOCK's shapes


def nafnet_size(config: dict) -> tuple[int, int]:
    """(tensors, parameters) of ``NAFNet(**config)``, computed from the configuration alone in
    O(stages): nothing is built, so a configuration read off a crafted checkpoint can be judged
    before anything is allocated. Equal to ``len(state_dict())`` and the parameter count of the
    built network (tested)."""
    img, width = int(config["img_channel"]), int(config["width"])
    enc, dec = [int(n) for n in config["enc_blk_nums"]], [int(n) for n in config["dec_blk_nums"]]
    middle = int(config["middle_blk_num"])
    keys = 4 + 18 * (sum(enc) + middle + sum(dec)) + 2 * len(enc) + len(dec)
    params = width * img * 9 + width + img * width * 9 + img
    chan = width
    for n in enc:
        params += n * _block_params(chan) + 2 * chan * chan * 4 + 2 * chan
        chan *= 2
    params += middle * _block_params(chan)
    for n in dec:
        params += 2 * chan * chan
        chan //= 2
        params += n * _block_params(chan)
    return keys, params


def nafnet_state_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``NAFNet(**config)`` and its shape, without building the network
    (the official names; equal to ``{k: v.shape for k, v in NAFNet(**config).state_dict().items()}``,
    tested). Linear in the number of blocks: judge :func:`nafnet_size` first."""
    img, width = int(config["img_channel"]), int(config["width"])
    out: dict[str, tuple[int, ...]] = {"intro.weight": (width, img, 3, 3), "intro.bias": (width,),
                                       "ending.weight": (img, width, 3, 3), "ending.bias": (img,)}

    def blocks(prefix: str, n: int, c: int) -> None:
        for i in range(n):
            for name, shape in _BLOCK:
                out[f"{prefix}.{i}.{name}"] = shape(c)

    chan = width
    for s, n in enumerate(config["enc_blk_nums"]):
        blocks(f"encoders.{s}", int(n), chan)
        out[f"downs.{s}.weight"], out[f"downs.{s}.bias"] = (2 * chan, chan, 2, 2), (2 * chan,)
        chan *= 2
    blocks("middle_blks", int(config["middle_blk_num"]), chan)
    for s, n in enumerate(config["dec_blk_nums"]):
        out[f"ups.{s}.0.weight"] = (2 * chan, chan, 1, 1)
        chan //= 2
        blocks(f"decoders.{s}", int(n), chan)
    return out


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel dimension of each pixel of an (N, C, H, W) map.

    ``y = weight * (x - mean_c(x)) / sqrt(var_c(x) + eps) + bias`` with the biased variance
    over the C channels of each pixel, as NAFNet's ``LayerNorm2d`` (eps = 1e-6). The official
    release hand-writes the backward pass; autograd of this forward gives the same gradient.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        centred = x - mu
        var = centred.pow(2).mean(1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


class SimpleGate(nn.Module):
    """NAFNet's gate: split the channels in two halves and multiply them (C -> C/2)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class LocalAvgPool2d(nn.Module):
    """TLC's local average pooling: a ``kernel_size`` box mean at stride 1, edge-replicated.

    Replaces the global average pool of the simplified channel attention at test time
    (Chu et al. 2022, "TLC"): each pixel gets the mean over the ``kernel_size`` window
    around it, computed on the valid part of the map with an integral image and then
    replicate-padded back to the input size (as the official ``AvgPool2d(auto_pad=True)``).
    When the kernel covers the whole map in both dimensions this is the global mean, the
    behaviour during training.
    """

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        kh, kw = int(kernel_size[0]), int(kernel_size[1])
        if kh < 1 or kw < 1:
            raise UsageError(f"LocalAvgPool2d kernel_size must be positive, got {kernel_size}")
        self.kernel_size = (kh, kw)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        if kh >= h and kw >= w:
            return F.adaptive_avg_pool2d(x, 1)
        k1, k2 = min(h, kh), min(w, kw)
        # Integral image of the mean-removed map (smaller magnitudes -> less float32 rounding).
        mean = x.mean(dim=(-2, -1), keepdim=True)
        s = F.pad((x - mean).cumsum(-1).cumsum(-2), (1, 0, 1, 0))
        box = s[..., k1:, k2:] - s[..., :-k1, k2:] - s[..., k1:, :-k2] + s[..., :-k1, :-k2]
        out = box / (k1 * k2) + mean
        oh, ow = out.shape[-2:]
        pad = ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2)
        if any(pad):
            out = F.pad(out, pad, mode="replicate")
        return out

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class NAFBlock(nn.Module):
    """One NAFNet block on ``c`` channels (see the module docstring for the equations).

    ``dw_expand`` and ``ffn_expand`` are the channel expansions of the depthwise branch and
    the feed-forward branch (2 in every published configuration); ``drop_out_rate`` adds
    dropout after conv3 and conv5 as the official block does (0 = none).
    """

    def __init__(
        self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0
    ) -> None:
        super().__init__()
        dw = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw, 1, bias=True)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw, bias=True)
        self.conv3 = nn.Conv2d(dw // 2, c, 1, bias=True)
        # Index 0 is the pooling (no parameters), index 1 the 1x1 conv: keys "sca.1.*".
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1, bias=True))
        self.sg = SimpleGate()
        ffn = c * ffn_expand
        self.conv4 = nn.Conv2d(c, ffn, 1, bias=True)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1, bias=True)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1: nn.Module = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2: nn.Module = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.conv2(self.conv1(self.norm1(inp)))
        x = self.sg(x)
        x = x * self.sca(x)
        x = self.dropout1(self.conv3(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        x = self.dropout2(x)
        return y + x * self.gamma


class NAFNet(nn.Module):
    """The NAFNet U-Net of the official release (same module names, same shapes).

    Args:
        img_channel: channels of the input and output image (3 for RGB).
        width: channels after ``intro``; each encoder stage doubles them.
        middle_blk_num: number of blocks at the lowest resolution.
        enc_blk_nums: blocks per encoder stage (one 2x downsampling per stage).
        dec_blk_nums: blocks per decoder stage (must have as many stages as the encoder).

    The published SIDD denoising model is ``NAFNet(3, 32, 12, [2, 2, 4, 8], [2, 2, 2, 2])``;
    GoPro deblurring uses width 64, middle 1, enc [1, 1, 1, 28], dec [1, 1, 1, 1].
    Any input size works: the input is zero-padded to a multiple of ``2 ** len(enc_blk_nums)``
    and the output cropped back to (H, W).
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
    ) -> None:
        super().__init__()
        enc_blk_nums = [int(n) for n in enc_blk_nums]
        dec_blk_nums = [int(n) for n in dec_blk_nums]
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise UsageError(
                f"NAFNet needs as many decoder as encoder stages, got enc_blk_nums={enc_blk_nums} "
                f"and dec_blk_nums={dec_blk_nums}"
            )
        if img_channel < 1 or width < 1 or middle_blk_num < 0 or min(enc_blk_nums + dec_blk_nums + [0]) < 0:
            raise UsageError(
                f"invalid NAFNet configuration: img_channel={img_channel}, width={width}, "
                f"middle_blk_num={middle_blk_num}, enc_blk_nums={enc_blk_nums}, dec_blk_nums={dec_blk_nums}"
            )
        self.config = {
            "img_channel": int(img_channel),
            "width": int(width),
            "middle_blk_num": int(middle_blk_num),
            "enc_blk_nums": list(enc_blk_nums),
            "dec_blk_nums": list(dec_blk_nums),
        }
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1, bias=True)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1, bias=True)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2, bias=True))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
        self.padder_size = 2 ** len(self.encoders)

    def check_image_size(self, x: Tensor) -> Tensor:
        """Zero-pad right/bottom to a multiple of ``padder_size`` (as the official code)."""
        h, w = x.shape[-2:]
        ph = (self.padder_size - h % self.padder_size) % self.padder_size
        pw = (self.padder_size - w % self.padder_size) % self.padder_size
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return x

    def forward(self, inp: Tensor) -> Tensor:
        if inp.dim() != 4 or inp.shape[1] != self.config["img_channel"]:
            raise ShapeError(
                f"NAFNet expects (N, {self.config['img_channel']}, H, W), got shape {tuple(inp.shape)}"
            )
        h, w = inp.shape[-2:]
        inp = self.check_image_size(inp)
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + inp
        return x[:, :, :h, :w]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) == 4:  # the official (N, C, H, W) form
        v = v[2:]
    if len(v) != 2:
        raise UsageError(f"expected an int, (H, W) or (N, C, H, W), got {v}")
    return v  # type: ignore[return-value]


def nafnet_tlc_kernel_sizes(
    levels: int, train_size: int | Sequence[int] = 256, base_size: int | Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """TLC pooling kernel per U-Net level (0 = full resolution, ``levels`` = the middle).

    As the official ``NAFNetLocal``: ``base_size`` defaults to 1.5 x ``train_size`` (the
    receptive window of the training crops' global pooling, enlarged by 1.5 as TLC
    recommends) and the kernel at a level of a feature map ``f`` pixels high (for the
    training-size input, padded to a multiple of ``2 ** levels``) is ``f * base // train``:
    ``base_size`` measured in input pixels, scaled to each level's resolution. For the
    default train 256 / base 384: 384, 192, 96, 48, 24 pixels at levels 0..4.
    """
    th, tw = _pair(train_size)
    bh, bw = _pair(base_size) if base_size is not None else (int(th * 1.5), int(tw * 1.5))
    m = 2**levels
    ph, pw = -(-th // m) * m, -(-tw // m) * m
    return [((ph >> lvl) * bh // th, (pw >> lvl) * bw // tw) for lvl in range(levels + 1)]


class NAFNetLocal(NAFNet):
    """NAFNet with TLC local average pooling in every channel attention (same keys).

    Args (besides NAFNet's):
        train_size: training crop size, int or (H, W) (or the official (N, C, H, W));
            default 256, the crop of the published SIDD and GoPro configurations.
        base_size: pooling window in input pixels at full resolution; default
            ``1.5 * train_size`` (384), the official default. Deeper levels use it scaled
            to their resolution (see :func:`nafnet_tlc_kernel_sizes`).

    The state dict is identical to :class:`NAFNet`'s; images smaller than ``base_size`` in
    both dimensions give exactly NAFNet's output (the window covers the whole map). On
    larger images each pixel's attention sees its local neighbourhood, as during training on
    crops, which also makes tiled and whole-image inference agree closely.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
        *,
        train_size: int | Sequence[int] = 256,
        base_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        levels = len(self.encoders)
        kernels = nafnet_tlc_kernel_sizes(levels, train_size, base_size)
        self.config.update(train_size=_pair(train_size), base_size=kernels[0])
        stages: list[tuple[int, nn.Module]] = [(lvl, enc) for lvl, enc in enumerate(self.encoders)]
        stages.append((levels, self.middle_blks))
        stages += [(levels - 1 - i, dec) for i, dec in enumerate(self.decoders)]
        for lvl, stage in stages:
            for block in stage:
                block.sca[0] = LocalAvgPool2d(kernels[lvl])
