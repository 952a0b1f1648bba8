"""Fault corpus, class *runaway*: small files that imply huge work. A crafted checkpoint must be
refused before any network is allocated, an image over the pixel limit before it is decoded; each
case runs under a time bound and its peak memory is checked."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from faultkit import make_set

# --------------------------------------------------------------------------- crafted checkpoints


def _meta_shapes(**config):
    import torch

    from colorfid.models.nafnet import NAFNet

    with torch.device("meta"):
        net = NAFNet(**config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def wide_checkpoint(path: Path, width: int = 100_000) -> Path:
    """Every tensor of a width-``width`` NAFNet as a stride-0 view of one number: a file of a few
    KB that implies ~7 width**2 parameters (7.0e10 for the default width)."""
    import torch

    sd = {k: torch.zeros((1,) * len(s)).expand(*s) for k, s in
          _meta_shapes(img_channel=3, width=width, middle_blk_num=1, enc_blk_nums=[], dec_blk_nums=[]).items()}
    torch.save({"params": sd}, path)
    return path


def deep_checkpoint(path: Path, blocks: int = 200_000) -> Path:
    """A width-8 NAFNet with one middle block whose keys are numbered ``blocks - 1``."""
    import torch

    sd = {}
    for k, s in _meta_shapes(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[], dec_blk_nums=[]).items():
        sd[k.replace("middle_blks.0.", f"middle_blks.{blocks - 1}.")] = torch.zeros(s)
    torch.save({"params": sd}, path)
    return path


def gappy_checkpoint(path: Path) -> Path:
    """Blocks 0, 1 and 5 of six: the inferred config would build blocks that have no weights."""
    import torch

    sd = {}
    for k, s in _meta_shapes(img_channel=3, width=8, middle_blk_num=3, enc_blk_nums=[], dec_blk_nums=[]).items():
        sd[k.replace("middle_blks.2.", "middle_blks.5.")] = torch.zeros(s)
    torch.save({"params": sd}, path)
    return path


EVAL = ["eval", "--sets", "lqsets/good", "--device", "cpu", "--no-progress", "--checkpoint"]


def test_runaway_wide_checkpoint_is_refused_before_allocation(runner, proj, env):
    wide_checkpoint(proj / "wide.pth")
    assert (proj / "wide.pth").stat().st_size < 1_000_000
    r = runner.cli(*EVAL, "wide.pth", cwd=proj, env=env, timeout=60).usage(
        "CheckpointError", "wide.pth", "parameters", "COLORFID_MAX_PARAMS")
    assert r.wall < 5 and r.maxrss_mb < 1000, (r.wall, r.maxrss_mb)


def test_runaway_deep_checkpoint_is_refused_before_allocation(runner, proj, env):
    deep_checkpoint(proj / "deep.pth")
    r = runner.cli(*EVAL, "deep.pth", cwd=proj, env=env, timeout=60).usage(
        "CheckpointError", "deep.pth", "middle_blks.0")
    assert r.wall < 5, r.wall


def test_runaway_gappy_checkpoint_names_the_missing_blocks(runner, proj, env):
    gappy_checkpoint(proj / "gappy.pth")
    runner.cli(*EVAL, "gappy.pth", cwd=proj, env=env, timeout=60).usage(
        "CheckpointError", "gappy.pth", "middle_blks.2", "middle_blks.5")


def test_runaway_parameter_budget_is_a_documented_knob(runner, proj, env):
    from faultkit import identity_checkpoint

    identity_checkpoint(proj / "id.pth")
    runner.cli(*EVAL, "id.pth", cwd=proj, env={**env, "COLORFID_MAX_PARAMS": "1000"}).usage(
        "CheckpointError", "id.pth", "COLORFID_MAX_PARAMS=1000")
    runner.cli(*EVAL, "id.pth", cwd=proj, env={**env, "COLORFID_MAX_PARAMS": "1e6"}).passed()
    runner.cli(*EVAL, "id.pth", cwd=proj, env={**env, "COLORFID_MAX_PARAMS": "lots"}).usage(
        "UsageError", "COLORFID_MAX_PARAMS", "lots")


TRAIN_YML = """\
name: t
datasets:
  train:
    dataroot_gt: {root}/lqsets/good/gt
    dataroot_lq: {root}/lqsets/good/lq
    gt_size: 16
    batch_size_per_gpu: 1
    num_worker_per_gpu: 0
network_g: {{type: NAFNet, width: {width}, enc_blk_nums: [], middle_blk_num: {middle}, dec_blk_nums: []}}
path:
  experiments_root: {root}/exp
train:
  optim_g: {{type: Adam, lr: 0.001}}
  total_iter: 2
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
logger: {{print_freq: 1, save_checkpoint_freq: 1000}}
"""


@pytest.mark.parametrize(("width", "middle", "says"), [
    (8, 200_000, ["200,000 blocks", "limit of 1,000"]),
    (40_000, 1, ["11,203,520,003 parameters", "COLORFID_MAX_PARAMS=200000000"]),
])
def test_runaway_training_network_over_the_budget(runner, proj, env, width, middle, says):
    """A training YAML whose network_g would take minutes or gigabytes to build is refused before
    anything is built: 200,000 blocks (over the 1,000-block limit; published NAFNets have 36), or
    width 40,000 (7c² + 33c in its block, 2·27c + c + 3 in intro and ending: 11,203,520,003 parameters, over the 2e8 budget)."""
    (proj / "t.yml").write_text(TRAIN_YML.format(root=proj, width=width, middle=middle))
    r = runner.cli("train", "-opt", "t.yml", "--device", "cpu", "--no-progress", cwd=proj, env=env,
                   timeout=60).usage("ConfigError", "t.yml", "network_g", *says)
    assert r.wall < 5 and r.extra_rss_mb < 500, (r.wall, r.extra_rss_mb)


def test_runaway_crafted_checkpoints_in_a_fresh_process(tmp_path):
    """Figure: a crafted checkpoint implying > 1e9 parameters fails in < 5 s with < 500 MB peak RSS
    (a fresh interpreter; RSS includes torch itself)."""
    wide_checkpoint(tmp_path / "wide.pth")
    deep_checkpoint(tmp_path / "deep.pth")
    code = r'''
import json, resource, sys, time
import torch
from colorfid.errors import CheckpointError
from colorfid.models import load_model
out = {}
for name in sys.argv[1:]:
    t = time.perf_counter()
    try:
        load_model(name)
        out[name] = "loaded"
    except CheckpointError as exc:
        out[name] = [type(exc).__name__, time.perf_counter() - t, str(exc)[:300]]
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
'''
    r = subprocess.run([sys.executable, "-c", code, "wide.pth", "deep.pth"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\nfigure: crafted checkpoints refused: wide {out['wide.pth'][1]:.3f} s, deep {out['deep.pth'][1]:.3f} s; "
          f"peak RSS of the whole process (torch included) {out['maxrss_mb']:.0f} MB")
    for name in ("wide.pth", "deep.pth"):
        assert out[name][0] == "CheckpointError" and out[name][1] < 5, out
    assert out["maxrss_mb"] < 500, out


# --------------------------------------------------------------------------- images over the pixel limit


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def big_png(path: Path, w: int, h: int, *, bits: int = 8, pixels: bool = True) -> Path:
    """A valid PNG of w x h grey-blue pixels, compressed row by row (a few hundred KB for 64 MP);
    ``pixels=False`` writes the header only (what a decoder reads first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 2, 0, 0, 0)))
        if pixels:
            comp = zlib.compressobj(9)
            row = b"\x00" + bytes([40, 60, 200] * (bits // 8)) * w
            data = bytearray()
            for _ in range(h):
                data += comp.compress(row)
            data += comp.flush()
            fh.write(_chunk(b"IDAT", bytes(data)))
        fh.write(_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """One 8000 x 8000 PNG (64 MP, ~200 KB), made once."""
    return big_png(tmp_path_factory.mktemp("huge") / "huge.png", 8000, 8000)


def _huge_set(proj: Path, huge: Path, sides=("pred",)) -> Path:
    d = proj / "bigsets" / "big"
    for side in ("gt", *sides):
        (d / side).mkdir(parents=True, exist_ok=True)
        (d / side / "huge.png").write_bytes(huge.read_bytes())
    return d


def test_runaway_64_megapixel_png_is_refused_from_its_header(runner, proj, env, huge):
    assert huge.stat().st_size < 400_000
    _huge_set(proj, huge)
    r = runner.cli("eval", "--predictions", "bigsets", "--no-progress", cwd=proj, env=env, timeout=60).usage(
        "StressSetError", "huge.png", "8000x8000", "COLORFID_MAX_PIXELS")
    assert r.wall < 10 and r.maxrss_mb < 1000, (r.wall, r.maxrss_mb)


def test_runaway_64_megapixel_png_under_pytest(runner, proj, env, huge):
    _huge_set(proj, huge)
    r = runner.pytest("--colorfid-predictions=bigsets", cwd=proj, env=env, timeout=60).usage(
        "StressSetError", "huge.png", "COLORFID_MAX_PIXELS", code=4)
    assert r.wall < 15, r.wall


def test_runaway_64_megapixel_input_of_a_model(runner, proj, env, huge):
    from faultkit import identity_checkpoint

    identity_checkpoint(proj / "id.pth")
    _huge_set(proj, huge, sides=("lq",))
    r = runner.cli("eval", "--checkpoint", "id.pth", "--sets", "bigsets/big", "--no-progress", cwd=proj, env=env,
                   timeout=60).usage("StressSetError", "huge.png", "COLORFID_MAX_PIXELS")
    assert r.wall < 10, r.wall


def test_runaway_read_image_checks_the_header_first(runner, proj, env, huge):
    code = f'''
import time, resource
from colorfid.io import read_image
from colorfid.errors import ImageTooLargeError
t = time.perf_counter()
try:
    read_image({str(huge)!r})
except ImageTooLargeError as exc:
    print("refused", round(time.perf_counter() - t, 3), exc)
'''
    r = runner.python(code, cwd=proj, env=env, timeout=60).passed("refused", "huge.png", "64,000,000 pixels")
    assert r.wall < 5 and r.maxrss_mb < 1000, (r.wall, r.maxrss_mb)


def test_runaway_16_bit_png_over_the_limit(runner, proj, env):
    big_png(proj / "s16" / "x" / "gt" / "a.png", 9000, 9000, bits=16, pixels=False)
    big_png(proj / "s16" / "x" / "pred" / "a.png", 9000, 9000, bits=16, pixels=False)
    runner.cli("eval", "--predictions", "s16", "--no-progress", cwd=proj, env=env, timeout=60).usage(
        "StressSetError", "a.png", "9000x9000", "COLORFID_MAX_PIXELS")


def test_runaway_decompression_bomb_sized_header(runner, proj, env):
    """Past Pillow's own bomb guard (2 x 89 MP): still colorfid's clear message and knob."""
    big_png(proj / "bomb.png", 20000, 20000, pixels=False)
    code = f'''
from colorfid.io import read_image
from colorfid.errors import ImageTooLargeError
try:
    read_image({str(proj / "bomb.png")!r})
except ImageTooLargeError as exc:
    print("refused", exc)
'''
    runner.python(code, cwd=proj, env=env, timeout=60).passed("refused", "bomb.png", "400,000,000 pixels",
                                                             "COLORFID_MAX_PIXELS")


def test_runaway_huge_tiff_header(runner, proj, env):
    from PIL import Image

    d = proj / "tiffs" / "t"
    for side in ("gt", "pred"):
        (d / side).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(d / side / "a.tif")
        data = bytearray((d / side / "a.tif").read_bytes())
        # ImageWidth (256) and ImageLength (257) in the first IFD -> 30000 x 30000
        (ifd,) = struct.unpack("<I", data[4:8])
        (n,) = struct.unpack("<H", data[ifd:ifd + 2])
        for i in range(n):
            e = ifd + 2 + 12 * i
            tag, typ = struct.unpack("<HH", data[e:e + 4])
            if tag in (256, 257):
                data[e + 8:e + 12] = struct.pack("<H", 30000) + b"\0\0" if typ == 3 else struct.pack("<I", 30000)
        (d / side / "a.tif").write_bytes(bytes(data))
    runner.cli("eval", "--predictions", "tiffs", "--no-progress", cwd=proj, env=env, timeout=60).usage(
        "StressSetError", "a.tif", "COLORFID_MAX_PIXELS")


def test_runaway_pixel_limit_is_a_documented_knob(runner, proj, env):
    runner.cli("eval", "--predictions", "sets", "--sets", "good", "--no-progress", cwd=proj,
               env={**env, "COLORFID_MAX_PIXELS": "500"}).usage("StressSetError", "24x24", "COLORFID_MAX_PIXELS=500")
    runner.cli("eval", "--predictions", "sets", "--sets", "good", "--no-progress", cwd=proj,
               env={**env, "COLORFID_MAX_PIXELS": "576"}).passed()
    runner.cli("eval", "--predictions", "sets", "--sets", "good", "--no-progress", cwd=proj,
               env={**env, "COLORFID_MAX_PIXELS": "-3"}).usage("UsageError", "COLORFID_MAX_PIXELS", "-3")


TILED = r'''
import resource, sys, torch
from torch import nn
from colorfid.models.inference import run_model
side = int(sys.argv[1])
img = torch.rand(3, side, side)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
net = nn.Conv2d(3, 3, 3, padding=1)
out = run_model(net, img, tile=256, overlap=32, device="cpu", progress=False)
assert out.shape == img.shape
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(round(before, 1), round(peak, 1), round(img.numel() * 4 / 2**20, 1))
'''


def test_runaway_tiled_inference_memory_is_the_output_plus_a_tile(runner, proj, env):
    """A 4096 x 4096 image (192 MiB as float32) in 256-px tiles: beyond the input and the output
    buffer, the working memory is that of a tile (the weight plane is one channel)."""
    r = runner.python(TILED, 4096, cwd=proj, env=env, timeout=300).passed()
    before, peak, image_mb = (float(x) for x in r.out.split())
    print(f"\nfigure: tiled inference of a {image_mb:.0f} MiB image: {peak - before:.0f} MiB above the input")
    assert peak - before < 1.6 * image_mb, (before, peak, image_mb)
