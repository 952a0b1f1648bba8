"""Training data: paired image folders, paired random crops, dihedral augmentation, optional
LQ-only photometric jitter, on-the-fly grayscale degradation, and a resumable distributed sampler.

Determinism
-----------
Every random choice made for a training sample (crop position, flips, rotation, jitter) is drawn
from a generator seeded by ``(seed, epoch, position)``, where *position* is the sample's place in
the epoch's global order. The :class:`TrainSampler` yields those keys together with the dataset
index, so a sample's augmentation does not depend on which DataLoader worker loads it, on the
number of workers, on the number of DDP processes, or on whether training was interrupted and
resumed. The sampler's position (epoch, samples consumed) is saved in the training state and
restored, which makes resume exact. Workers are additionally seeded deterministically
(:func:`worker_init_fn`) for any user code that draws from the global ``random`` / NumPy RNGs.

Images are ``(3, H, W)`` float32 sRGB-encoded tensors in [0, 1] (:func:`colorfid.io.read_image`).
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..errors import ConfigError, ShapeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "PairedImageDataset",
    "paired_paths",
    "paired_random_crop",
    "augment_dihedral",
    "photometric_jitter",
    "to_grayscale",
    "TrainSampler",
    "worker_init_fn",
    "build_train_loader",
    "batches_per_epoch",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: A sampler item: (dataset index, seed, epoch, global position in the epoch).
SampleKey = tuple[int, int, int, int]


def _list_images(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"{what}: {folder} is not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            if p.stem in out:
                raise ConfigError(f"{what}: two images share the stem {p.stem!r} in {folder}: "
                                  f"{out[p.stem].name}, {p.name}")
            out[p.stem] = p
    if not out:
        raise ConfigError(f"{what}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return out


def paired_paths(gt_root: str | os.PathLike, lq_root: str | os.PathLike | None, *,
                 filename_tmpl: str = "{}") -> list[tuple[Path, Path | None]]:
    """Pair the images of two folders by file stem: LQ stem = ``filename_tmpl.format(gt_stem)``.

    Returns ``[(gt_path, lq_path), ...]`` sorted by GT stem (``lq_path`` is None when
    ``lq_root`` is None). A GT image without its LQ partner, or an LQ image without a GT,
    raises :class:`~colorfid.errors.ConfigError` listing (up to 10 of) the unmatched names.
    """
    gts = _list_images(Path(gt_root), "dataroot_gt")
    if lq_root is None:
        return [(gts[s], None) for s in sorted(gts)]
    lqs = _list_images(Path(lq_root), "dataroot_lq")
    pairs: list[tuple[Path, Path | None]] = []
    missing: list[str] = []
    used: set[str] = set()
    for stem in sorted(gts):
        lq_stem = filename_tmpl.format(stem)
        if lq_stem in lqs:
            pairs.append((gts[stem], lqs[lq_stem]))
            used.add(lq_stem)
        else:
            missing.append(gts[stem].name)
    extra = sorted(set(lqs) - used)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} GT image(s) in {gt_root} without an LQ partner in {lq_root} "
                         f"(expected stem {filename_tmpl!r}.format(gt stem)): {', '.join(missing[:10])}")
        if extra:
            parts.append(f"{len(extra)} LQ image(s) in {lq_root} without a GT: {', '.join(lqs[s].name for s in extra[:10])}")
        raise ConfigError("; ".join(parts))
    return pairs


def paired_random_crop(lq: Tensor, gt: Tensor, size: int, rng: np.random.Generator, *,
                       gt_path: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Crop the same ``size`` x ``size`` window (uniform position) from two aligned images.

    Both images are ``(C, H, W)`` of equal H and W (scale 1). Images smaller than ``size`` raise
    :class:`~colorfid.errors.ShapeError` naming the file.
    """
    h, w = gt.shape[-2:]
    if lq.shape[-2:] != gt.shape[-2:]:
        raise ShapeError(f"{gt_path or 'gt'}: LQ size {tuple(lq.shape[-2:])} differs from GT size {(h, w)} "
                         "(colorfid trains scale-1 restoration)")
    if h < size or w < size:
        raise ShapeError(f"{gt_path or 'gt'}: image {h}x{w} is smaller than gt_size {size}")
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return lq[..., top:top + size, left:left + size], gt[..., top:top + size, left:left + size]


def augment_dihedral(images: Sequence[Tensor], rng: np.random.Generator, *, hflip: bool = True,
                     rotation: bool = True) -> list[Tensor]:
    """Apply the same random element of the dihedral group D4 to every image.

    As BasicSR's ``augment``: horizontal flip with p=0.5 (if ``hflip``); with ``rotation``, a
    vertical flip with p=0.5 and a transpose (a 90° rotation combined with the flips) with p=0.5.
    Together these reach all 8 symmetries of the square. Three draws are made always, so the
    random stream does not depend on the flags.
    """
    draws = rng.random(3)
    do_h = hflip and draws[0] < 0.5
    do_v = rotation and draws[1] < 0.5
    do_t = rotation and draws[2] < 0.5
    out = []
    for img in images:
        if do_h:
            img = img.flip(-1)
        if do_v:
            img = img.flip(-2)
        if do_t:
            img = img.transpose(-2, -1)
        out.append(img.contiguous())
    return out


def to_grayscale(image: Tensor) -> Tensor:
    """The neutral grey with each pixel's CIE luminance Y (hence its L*): the colourization input.

    sRGB -> linear -> XYZ (:mod:`colorfid.color`, IEC 61966-2-1), keep Y, encode Y with the sRGB
    transfer function and copy it to the three channels (R = G = B exactly). Shape ``(..., 3, H, W)``.
    """
    from ..color import linear_rgb_to_xyz, linear_to_srgb, srgb_to_linear

    y = linear_rgb_to_xyz(srgb_to_linear(image, clip=True))[..., 1:2, :, :]
    grey = linear_to_srgb(y.expand(*y.shape[:-3], 3, *y.shape[-2:]).contiguous())
    return grey.clamp(0.0, 1.0)


#: ITU-R BT.601 luma weights of encoded R, G, B (the saturation jitter keeps this luma).
_LUMA_601 = (0.299, 0.587, 0.114)


def photometric_jitter(lq: Tensor, cfg: Mapping[str, Any], rng: np.random.Generator) -> Tensor:
    """Random exposure, white balance, contrast and saturation applied to the LQ image only.

    ``cfg``: ``prob`` (probability of jittering a sample at all), ``exposure`` ([lo, hi] EV stops:
    linear light x 2**ev), ``white_balance`` ([lo, hi] gains drawn independently for R and B in
    linear light, G fixed), ``contrast`` ([lo, hi] factor applied to the encoded image around its
    mean), ``saturation`` ([lo, hi] factor s: ``Y + s (x - Y)`` about the BT.601 luma
    ``Y = 0.299 R + 0.587 G + 0.114 B`` of the encoded values). A range of null switches that part
    off. Exposure and white balance act in linear light (:func:`colorfid.color.srgb_to_linear`),
    as a camera would; the result is clamped to [0, 1]. The GT is untouched: the jitter widens
    the range of "before" images a model learns to correct. The number of draws is fixed, so
    enabling one part does not change the others' values.
    """
    from ..color import linear_to_srgb, srgb_to_linear

    draws = rng.random(6)
    if draws[0] >= float(cfg.get("prob", 1.0)):
        return lq

    def pick(rng_pair: Sequence[float] | None, u: float) -> float | None:
        if rng_pair is None:
            return None
        lo, hi = float(rng_pair[0]), float(rng_pair[1])
        return lo + (hi - lo) * u

    ev = pick(cfg.get("exposure"), draws[1])
    wb = cfg.get("white_balance")
    gain_r, gain_b = pick(wb, draws[2]), pick(wb, draws[3])
    contrast = pick(cfg.get("contrast"), draws[4])
    saturation = pick(cfg.get("saturation"), draws[5])
    out = lq
    if ev is not None or gain_r is not None:
        lin = srgb_to_linear(out, clip=True)
        gains = torch.ones(3, 1, 1, dtype=lin.dtype)
        if ev is not None:
            gains = gains * (2.0 ** ev)
        if gain_r is not None:
            gains[0] *= gain_r
            gains[2] *= gain_b  # type: ignore[operator]
        out = linear_to_srgb((lin * gains).clamp(0.0, 1.0))
    if contrast is not None:
        mean = out.mean()
        out = (out - mean) * contrast + mean
    if saturation is not None:
        luma = (out * torch.tensor(_LUMA_601, dtype=out.dtype).view(3, 1, 1)).sum(dim=-3, keepdim=True)
        out = luma + saturation * (out - luma)
    return out.clamp(0.0, 1.0)


def _read(path: Path) -> Tensor:
    from ..io import read_image

    return read_image(path)


class PairedImageDataset(Dataset):
    """LQ/GT image pairs from two folders matched by stem (BasicSR's ``PairedImageDataset``).

    ``degradation="grayscale"`` makes the LQ image from the GT (:func:`to_grayscale`) and needs
    no LQ folder. Training items get a paired random crop of ``gt_size`` (None: whole images),
    a random dihedral transform (``use_hflip`` / ``use_rot``), then the optional LQ-only
    ``color_jitter``. ``train=False`` disables all randomness.

    Indexing: ``ds[(index, seed, epoch, position)]`` (what :class:`TrainSampler` yields) draws
    the sample's randomness from ``numpy.random.default_rng((seed, epoch, position))``; a plain
    ``ds[index]`` draws it from the global NumPy RNG. Items are dicts with ``lq``, ``gt``
    (``(3, h, w)`` float32 in [0, 1]), ``lq_path`` and ``gt_path``.
    """

    def __init__(self, dataroot_gt: str | os.PathLike, dataroot_lq: str | os.PathLike | None = None, *,
                 gt_size: int | None = None, use_hflip: bool = True, use_rot: bool = True,
                 filename_tmpl: str = "{}", degradation: str | None = None,
                 color_jitter: Mapping[str, Any] | None = None, train: bool = True) -> None:
        if degradation not in (None, "grayscale"):
            raise ConfigError(f"degradation: unknown {degradation!r}; known: grayscale")
        if degradation is None and dataroot_lq is None:
            raise ConfigError("dataroot_lq: required unless degradation is set")
        self.pairs = paired_paths(dataroot_gt, None if degradation else dataroot_lq, filename_tmpl=filename_tmpl)
        self.gt_size = gt_size
        self.use_hflip = use_hflip
        self.use_rot = use_rot
        self.degradation = degradation
        self.color_jitter = dict(color_jitter) if color_jitter else None
        self.train = train

    @classmethod
    def from_options(cls, opt: Mapping[str, Any], *, train: bool = True) -> "PairedImageDataset":
        """Build from a normalised ``datasets.train`` / ``datasets.val*`` section."""
        return cls(opt["dataroot_gt"], opt.get("dataroot_lq"), gt_size=opt.get("gt_size"),
                   use_hflip=opt.get("use_hflip", True), use_rot=opt.get("use_rot", True),
                   filename_tmpl=opt.get("filename_tmpl", "{}"), degradation=opt.get("degradation"),
                   color_jitter=opt.get("color_jitter"), train=train)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            index, seed, epoch, position = (int(k) for k in key)
            rng = np.random.default_rng((seed, epoch, position))
        else:
            index = int(key)
            rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))
        gt_path, lq_path = self.pairs[index]
        gt = _read(gt_path)
        lq = gt if lq_path is None else _read(lq_path)
        if lq_path is not None and lq.shape != gt.shape:
            raise ShapeError(f"{lq_path}: LQ shape {tuple(lq.shape)} differs from GT {gt_path} shape {tuple(gt.shape)}")
        if self.train:
            if self.gt_size is not None:
                lq, gt = paired_random_crop(lq, gt, self.gt_size, rng, gt_path=gt_path)
            lq, gt = augment_dihedral([lq, gt], rng, hflip=self.use_hflip, rotation=self.use_rot)
        if self.degradation == "grayscale":
            lq = to_grayscale(gt)
        if self.train and self.color_jitter:
            lq = photometric_jitter(lq, self.color_jitter, rng)
        return {"lq": lq.contiguous(), "gt": gt.contiguous(), "lq_path": str(lq_path or gt_path),
                "gt_path": str(gt_path)}


class TrainSampler(DistributedSampler):
    """A resumable :class:`~torch.utils.data.distributed.DistributedSampler` (also for one process).

    Each epoch is a permutation of ``len(dataset) * enlarge_ratio`` positions (BasicSR's
    ``EnlargedSampler``: ``torch.randperm`` seeded with ``seed + epoch``, index = value mod
    ``len(dataset)``), padded to a multiple of ``num_replicas`` and strided by rank exactly as
    ``DistributedSampler`` does: rank ``r`` gets global positions ``r, r + W, r + 2W, ...``. With
    per-rank batch ``b``, the union of the ranks' ``j``-th batches is the single-process ``j``-th
    batch of size ``b * W``: DDP sees the same global batches as one process.

    Items are ``(index, seed, epoch, global_position)`` (see :class:`PairedImageDataset`).
    :meth:`set_epoch` takes the first local position to yield, for exact resume.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, enlarge_ratio: int = 1) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.enlarge_ratio = int(enlarge_ratio)
        self.dataset_size = len(dataset)  # type: ignore[arg-type]
        total = self.dataset_size * self.enlarge_ratio
        self.num_samples = math.ceil(total / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:  # type: ignore[override]
        """Select the epoch and the first local position (samples already consumed) to yield."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"TrainSampler.set_epoch: start {start} outside [0, {self.num_samples}]")
        self.epoch = int(epoch)
        self.start = int(start)

    def global_order(self) -> list[int]:
        """Dataset indices in this epoch's global order (padded to ``total_size``)."""
        total = self.dataset_size * self.enlarge_ratio
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(total, generator=g)
        else:
            order = torch.arange(total)
        idx = (order % self.dataset_size).tolist()
        pad = self.total_size - total
        while pad > 0:
            idx += idx[:pad]
            pad = self.total_size - len(idx)
        return idx

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        order = self.global_order()
        for k in range(self.start, self.num_samples):
            pos = self.rank + k * self.num_replicas
            yield (order[pos], self.seed, self.epoch, pos)

    def __len__(self) -> int:
        return self.num_samples - self.start


def worker_init_fn(worker_id: int) -> None:
    """Seed Python's and NumPy's global RNGs in a DataLoader worker from torch's worker seed.

    PyTorch gives worker ``i`` the seed ``base_seed + i`` with ``base_seed`` drawn from the
    DataLoader's generator (seeded by :func:`build_train_loader` from the run seed and rank), so
    every worker of every rank gets a distinct, reproducible seed.
    """
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def build_train_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0, seed: int = 0,
                       rank: int = 0, world_size: int = 1, shuffle: bool = True, enlarge_ratio: int = 1,
                       pin_memory: bool = False, persistent_workers: bool | None = None
                       ) -> tuple[DataLoader, TrainSampler]:
    """A training DataLoader (drop_last batches) over a :class:`TrainSampler`; returns both.

    Raises :class:`~colorfid.errors.ConfigError` when one process's share of an epoch holds fewer
    samples than one batch (the loop would never get a batch).
    """
    sampler = TrainSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                           enlarge_ratio=enlarge_ratio)
    if sampler.num_samples < batch_size:
        raise ConfigError(
            f"datasets.train.batch_size_per_gpu: {batch_size} is larger than one process's share of an epoch "
            f"({sampler.num_samples} samples = {len(dataset)} images x enlarge ratio {enlarge_ratio} / "  # type: ignore[arg-type]
            f"{world_size} process(es)); lower the batch or raise dataset_enlarge_ratio")
    g = torch.Generator()
    g.manual_seed((seed * 1000003 + rank) % 2**63)
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
        pin_memory=pin_memory, worker_init_fn=worker_init_fn if num_workers > 0 else None, generator=g,
        persistent_workers=bool(persistent_workers and num_workers > 0),
    )
    return loader, sampler


def batches_per_epoch(sampler: TrainSampler, batch_size: int) -> int:
    """Full batches one process gets per epoch (the last partial batch is dropped)."""
    return sampler.num_samples // batch_size


