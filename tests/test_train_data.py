"""colorfid.train.data: pairing, crops, dihedral augmentation, jitter, grayscale, sampler, loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from colorfid.errors import ConfigError, ShapeError
from colorfid.train.data import (
    PairedImageDataset,
    TrainSampler,
    augment_dihedral,
    build_train_loader,
    paired_paths,
    paired_random_crop,
    photometric_jitter,
    to_grayscale,
)


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _pairs(root, n=6, size=(40, 48), seed=0):
    """n random 8-bit pairs; LQ = 255 - GT so alignment is checkable after any crop/flip."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        gt = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        _write(root / "gt" / f"im{i:02d}.png", gt)
        _write(root / "lq" / f"im{i:02d}.png", 255 - gt)
    return root / "gt", root / "lq"


def _dihedral(x):
    """The 8 symmetries of the square applied to the last two dims (independent oracle)."""
    out = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


# ----------------------------------------------------------------------------- pairing


def test_pairs_by_stem_and_template(tmp_path):
    _write(tmp_path / "gt" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "gt" / "b.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "lq" / "b_x.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "lq" / "a_x.png", np.zeros((4, 4, 3), np.uint8))
    pairs = paired_paths(tmp_path / "gt", tmp_path / "lq", filename_tmpl="{}_x")
    assert [(g.name, l.name) for g, l in pairs] == [("a.png", "a_x.png"), ("b.png", "b_x.png")]


def test_unmatched_names_are_listed(tmp_path):
    _write(tmp_path / "gt" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "gt" / "orphan.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "lq" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "lq" / "stray.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ConfigError) as exc:
        paired_paths(tmp_path / "gt", tmp_path / "lq")
    assert "orphan.png" in str(exc.value) and "stray.png" in str(exc.value)
    with pytest.raises(ConfigError, match="not a folder"):
        paired_paths(tmp_path / "nope", tmp_path / "lq")


# ----------------------------------------------------------------------------- crops, flips


def test_paired_crop_is_aligned_and_uniform(tmp_path):
    h, w, s = 9, 7, 4
    gt = torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w)
    lq = -gt
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        lc, gc = paired_random_crop(lq, gt, s, rng)
        assert gc.shape == (3, s, s) and torch.equal(lc, -gc)
        top, left = divmod(int(gc[0, 0, 0]), w)
        assert torch.equal(gc, gt[:, top:top + s, left:left + s])
        seen.add((top, left))
    assert seen == {(t, l) for t in range(h - s + 1) for l in range(w - s + 1)}
    with pytest.raises(ShapeError, match="smaller than gt_size 10"):
        paired_random_crop(lq, gt, 10, rng, gt_path="x.png")
    with pytest.raises(ShapeError, match="differs"):
        paired_random_crop(lq[:, :5], gt, 4, rng)


def test_dihedral_reaches_all_eight_and_is_paired():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    group = _dihedral(x)
    rng = np.random.default_rng(1)
    hit = set()
    for _ in range(300):
        a, b = augment_dihedral([x, -x], rng, hflip=True, rotation=True)
        assert torch.equal(b, -a)
        idx = [i for i, g in enumerate(group) if g.shape == a.shape and torch.equal(g, a)]
        assert len(idx) == 1
        hit.add(idx[0])
    assert hit == set(range(8))
    only_h = {tuple(augment_dihedral([x], rng, hflip=True, rotation=False)[0].flatten().tolist()) for _ in range(50)}
    assert only_h == {tuple(x.flatten().tolist()), tuple(x.flip(-1).flatten().tolist())}
    none = augment_dihedral([x], rng, hflip=False, rotation=False)[0]
    assert torch.equal(none, x)


# ----------------------------------------------------------------------------- colour ops


def test_grayscale_keeps_cie_luminance():
    colour = pytest.importorskip("colour")
    rng = np.random.default_rng(3)
    img = rng.random((3, 5, 6))
    grey = to_grayscale(torch.from_numpy(img))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    y_in = colour.RGB_to_XYZ(img.transpose(1, 2, 0), colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True)[..., 1]
    y_grey = colour.RGB_to_XYZ(grey.numpy().transpose(1, 2, 0), colour.RGB_COLOURSPACES["sRGB"],
                               apply_cctf_decoding=True)[..., 1]
    np.testing.assert_allclose(y_grey, y_in, atol=1e-6)


def test_jitter_exposure_and_white_balance_in_linear_light():
    colour = pytest.importorskip("colour")
    rng = np.random.default_rng(0)
    lq = torch.from_numpy(rng.random((3, 4, 4)) * 0.4)
    out = photometric_jitter(lq, {"prob": 1.0, "exposure": [1.0, 1.0], "white_balance": [0.5, 0.5],
                                  "contrast": None}, np.random.default_rng(5))
    lin = colour.cctf_decoding(lq.numpy(), function="sRGB")
    gains = np.array([0.5, 1.0, 0.5]).reshape(3, 1, 1) * 2.0
    expect = colour.cctf_encoding(np.clip(lin * gains, 0, 1), function="sRGB")
    np.testing.assert_allclose(out.numpy(), expect, atol=1e-6)
    # prob 0: untouched; contrast around the mean
    assert torch.equal(photometric_jitter(lq, {"prob": 0.0, "exposure": [1, 1]}, np.random.default_rng(0)), lq)
    c = photometric_jitter(lq, {"prob": 1.0, "contrast": [2.0, 2.0]}, np.random.default_rng(0))
    np.testing.assert_allclose(c.numpy(), np.clip((lq.numpy() - lq.numpy().mean()) * 2 + lq.numpy().mean(), 0, 1),
                               atol=1e-6)


def test_jitter_saturation_about_bt601_luma():
    # Hand-derived: (0.6, 0.4, 0.2) has luma 0.299*0.6 + 0.587*0.4 + 0.114*0.2 = 0.437;
    # saturation 0.5 -> 0.437 + 0.5 * (x - 0.437) = (0.5185, 0.4185, 0.3185).
    lq = torch.tensor([0.6, 0.4, 0.2], dtype=torch.float64).view(3, 1, 1).expand(3, 2, 2).contiguous()
    out = photometric_jitter(lq, {"prob": 1.0, "saturation": [0.5, 0.5]}, np.random.default_rng(1))
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.5185, 0.4185, 0.3185], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    # adding the saturation part does not change the other parts' draws
    cfg = {"prob": 1.0, "exposure": [-1.0, 0.0], "contrast": [0.5, 1.5]}
    a = photometric_jitter(lq, cfg, np.random.default_rng(3))
    b = photometric_jitter(lq, {**cfg, "saturation": [1.0, 1.0]}, np.random.default_rng(3))
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_dataset_item_alignment_jitter_lq_only_and_degradation(tmp_path):
    g, l = _pairs(tmp_path, n=2)
    ds = PairedImageDataset(g, l, gt_size=16)
    item = ds[(0, 7, 0, 3)]
    assert item["gt"].shape == (3, 16, 16) and item["gt"].dtype == torch.float32
    torch.testing.assert_close(item["lq"], 1.0 - item["gt"], atol=1e-6, rtol=0)
    again = ds[(0, 7, 0, 3)]
    assert torch.equal(again["gt"], item["gt"])  # the key fixes every random choice
    other = ds[(0, 7, 1, 3)]
    assert not torch.equal(other["gt"], item["gt"])  # another epoch, another crop
    jit = PairedImageDataset(g, l, gt_size=16, color_jitter={"prob": 1.0, "exposure": [0.5, 0.5]})[(0, 7, 0, 3)]
    assert torch.equal(jit["gt"], item["gt"]) and not torch.allclose(jit["lq"], item["lq"])
    grey = PairedImageDataset(g, None, gt_size=16, degradation="grayscale")[(0, 7, 0, 3)]
    assert torch.equal(grey["gt"], item["gt"]) and torch.equal(grey["lq"], to_grayscale(item["gt"]))
    full = PairedImageDataset(g, l, train=False)[1]
    assert full["gt"].shape == (3, 40, 48)


# ----------------------------------------------------------------------------- sampler


def test_sampler_ranks_partition_the_single_process_batches():
    ds = list(range(7))
    single = TrainSampler(ds, shuffle=True, seed=3, enlarge_ratio=2)
    order = list(single)
    assert len(order) == 14 and sorted(i for i, *_ in order) == sorted(list(range(7)) * 2)
    r0 = list(TrainSampler(ds, num_replicas=2, rank=0, shuffle=True, seed=3, enlarge_ratio=2))
    r1 = list(TrainSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=3, enlarge_ratio=2))
    b = 2  # per-rank batch; single-process batch 4
    for j in range(len(r0) // b):
        union = sorted(r0[j * b:(j + 1) * b] + r1[j * b:(j + 1) * b], key=lambda k: k[3])
        assert union == order[j * 4:(j + 1) * 4]
    single.set_epoch(1)
    assert [k[0] for k in single] != [k[0] for k in order]  # reshuffled
    assert all(k[2] == 1 for k in single)


def test_sampler_resumes_mid_epoch():
    ds = list(range(10))
    s = TrainSampler(ds, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=6)
    assert list(s) == full[6:] and len(s) == 4
    with pytest.raises(ValueError):
        s.set_epoch(0, start=11)


def _batches(loader, sampler, epoch, start, n):
    sampler.set_epoch(epoch, start)
    out = []
    for i, b in enumerate(loader):
        if i == n:
            break
        out.append((b["lq"].clone(), b["gt"].clone()))
    return out


def test_loader_workers_and_resume_give_the_same_batches(tmp_path):
    g, l = _pairs(tmp_path, n=6, size=(24, 24))
    ds = PairedImageDataset(g, l, gt_size=16, color_jitter={"prob": 0.5, "exposure": [-0.5, 0.5]})
    loader0, s0 = build_train_loader(ds, batch_size=2, num_workers=0, seed=11)
    loader2, s2 = build_train_loader(ds, batch_size=2, num_workers=2, seed=11)
    a = _batches(loader0, s0, 1, 0, 3)
    b = _batches(loader2, s2, 1, 0, 3)
    c = _batches(loader0, s0, 1, 2, 2)  # resumed after one batch
    for (la, ga), (lb, gb) in zip(a, b):
        assert torch.equal(la, lb) and torch.equal(ga, gb)
    for (la, ga), (lc, gc) in zip(a[1:], c):
        assert torch.equal(la, lc) and torch.equal(ga, gc)


def test_batch_larger_than_share_is_an_error(tmp_path):
    g, l = _pairs(tmp_path, n=3, size=(8, 8))
    ds = PairedImageDataset(g, l)
    with pytest.raises(ConfigError, match="batch_size_per_gpu"):
        build_train_loader(ds, batch_size=4)
