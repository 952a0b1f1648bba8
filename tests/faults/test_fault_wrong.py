"""Fault corpus, class *wrong*: wrong or misleading results. Images must be oriented exactly
once, two names must never share one output, and a refusal must say what is actually wrong."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from faultkit import gt_array, identity_checkpoint, make_set, png


def tiff(path: Path, arr: np.ndarray, orientation: int | None = None, otype: int = 3) -> Path:
    """A minimal little-endian uncompressed RGB TIFF (8 or 16 bits per sample) whose Orientation
    tag (274) is stored with TIFF type ``otype`` (3 SHORT, 4 LONG)."""
    h, w, _ = arr.shape
    bits = arr.dtype.itemsize * 8
    data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    bps_off, data_off = 8, 14
    ifd_off = data_off + len(data) + (data_off + len(data)) % 2
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bps_off), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, data_off), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if orientation is not None:
        entries.append((274, otype, 1, orientation))
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_off) + struct.pack("<HHH", bits, bits, bits) + data)
    out += b"\0" * (ifd_off - len(out)) + struct.pack("<H", len(entries))
    for tag, typ, count, value in sorted(entries):
        out += struct.pack("<HHIHH", tag, typ, count, value, 0) if typ == 3 and count == 1 else \
            struct.pack("<HHII", tag, typ, count, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out) + struct.pack("<I", 0))
    return path


def _stored_and_shown():
    """A stored 4 x 6 image with one red pixel top-left, and how orientation 6 (rotate 90° clockwise)
    shows it: 6 x 4, the red pixel top-right."""
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = (255, 0, 0)
    return a, np.rot90(a, k=-1)


READ = r'''
import sys, json
from colorfid.io import read_image
from colorfid.stress.sets import load_stress_set
t = read_image(sys.argv[1])
print(json.dumps({"shape": list(t.shape), "red": (t[0] > 0.5).nonzero().tolist()}))
'''


@pytest.mark.parametrize("bits,otype", [(8, 3), (8, 4), (16, 3), (16, 4)], ids=["8bit-short", "8bit-long",
                                                                               "16bit-short", "16bit-long"])
def test_wrong_tiff_orientation_is_applied_exactly_once(runner, proj, env, bits, otype):
    stored, shown = _stored_and_shown()
    arr = stored if bits == 8 else stored.astype(np.uint16) * 257
    tiff(proj / "o.tif", arr, 6, otype)
    r = runner.python(READ, proj / "o.tif", cwd=proj, env=env).passed()
    got = json.loads(r.out.strip().splitlines()[-1])
    assert got["shape"] == [3, 6, 4] and got["red"] == [[0, 3]], got


def test_wrong_rotated_tiff_against_an_upright_png_is_not_a_size_mismatch(runner, proj, env):
    g = gt_array(0, 24, 30).astype(np.uint8)
    d = proj / "tsets" / "rot"
    tiff(d / "gt" / "a.tif", np.ascontiguousarray(np.rot90(g, k=1)), 6, 4)  # stored rotated, shown upright
    png(d / "pred" / "a.png", g)
    runner.cli("eval", "--predictions", "tsets", "--no-progress", cwd=proj, env=env).passed("PASSED")


def test_wrong_png_exif_after_the_pixels_is_honoured_by_the_header_check(runner, proj, env):
    from PIL import Image

    g = gt_array(0, 24, 30).astype(np.uint8)
    d = proj / "esets" / "rot"
    png(d / "pred" / "a.png", g)
    ex = Image.Exif()
    ex[0x0112] = 6
    raw = Image.fromarray(np.ascontiguousarray(np.rot90(g, k=1)))
    (d / "gt").mkdir(parents=True)
    raw.save(d / "gt" / "a.png", exif=ex.tobytes())
    data = (d / "gt" / "a.png").read_bytes()
    # move the eXIf chunk after IDAT, where a decoder only finds it once the pixels are read
    i = data.index(b"eXIf") - 4
    (n,) = struct.unpack(">I", data[i:i + 4])
    chunk, rest = data[i:i + 12 + n], data[:i] + data[i + 12 + n:]
    j = rest.index(b"IEND") - 4
    (d / "gt" / "a.png").write_bytes(rest[:j] + chunk + rest[j:])
    runner.cli("eval", "--predictions", "esets", "--no-progress", cwd=proj, env=env).passed("PASSED")


def _colliding_names(proj: Path, names=("a b", "a_b")) -> Path:
    d = proj / "csets" / "c"
    for i, stem in enumerate(names):
        g = gt_array(i, 24, 24)
        png(d / "gt" / f"{stem}.png", g)
        png(d / "lq" / f"{stem}.png", g * (0.5 + 0.4 * i))  # two different inputs
    return d


def test_wrong_names_differing_in_punctuation_get_their_own_outputs(runner, proj, env):
    _colliding_names(proj)
    identity_checkpoint(proj / "id.pth")
    for _ in range(2):  # cold, then warm cache
        runner.cli("eval", "--checkpoint", "id.pth", "--sets", "csets/c", "--device", "cpu", "--json", "r.json",
                   "--no-progress", cwd=proj, env=env).no_traceback()
        images = json.loads((proj / "r.json").read_text())["sets"]["c"]["images"]
        outs = {im["name"]: im["output"] for im in images}
        assert outs["a b"] != outs["a_b"], outs
        from colorfid.io import read_image

        for im in images:  # the identity's output is its own input
            assert np.allclose(read_image(proj / im["output"]).numpy(), read_image(proj / im["lq"]).numpy(),
                               atol=1e-4), im["name"]


def test_wrong_set_names_differing_in_punctuation_get_their_own_cache(runner, proj, env):
    identity_checkpoint(proj / "id.pth")
    make_set(proj / "psets", "x y", sides=("lq",), factor=0.5)
    make_set(proj / "psets", "x_y", sides=("lq",), factor=0.9)
    runner.cli("eval", "--checkpoint", "id.pth", "--sets", "psets", "--device", "cpu", "--json", "r.json",
               "--no-progress", cwd=proj, env=env).no_traceback()
    sets = json.loads((proj / "r.json").read_text())["sets"]
    outs = [im["output"] for s in ("x y", "x_y") for im in sets[s]["images"]]
    assert len(set(outs)) == 4, outs


def test_wrong_full_size_files_of_names_differing_in_punctuation(runner, proj, env):
    import re

    _colliding_names(proj)
    identity_checkpoint(proj / "id.pth")
    runner.cli("eval", "--checkpoint", "id.pth", "--sets", "csets/c", "--device", "cpu", "--json", "r.json",
               "--no-progress", cwd=proj, env=env).no_traceback()
    runner.cli("report", "r.json", "--out", "rep", "--full-size", "--no-gate", cwd=proj, env=env).passed()
    html = (proj / "rep" / "index.html").read_text()
    outs = sorted(set(re.findall(r'href="(full/[^"]*_output\.png)"', html)))
    assert len(outs) == 2, outs
    assert (proj / "rep" / outs[0]).read_bytes() != (proj / "rep" / outs[1]).read_bytes()


def test_wrong_set_with_lq_and_pred_runs_the_model_on_lq(runner, proj, env):
    identity_checkpoint(proj / "id.pth")
    make_set(proj / "both", "both", sides=("lq", "pred"))
    r = runner.cli("eval", "--checkpoint", "id.pth", "--sets", "both/both", "--device", "cpu", "--no-progress",
                   cwd=proj, env=env)
    r.passed("PASSED")
    assert "no lq/" not in r.text


def test_wrong_set_with_only_pred_under_a_model_says_so(runner, proj, env):
    identity_checkpoint(proj / "id.pth")
    runner.cli("eval", "--checkpoint", "id.pth", "--sets", "sets/good", "--no-progress", cwd=proj, env=env).usage(
        "StressSetError", "good", "no lq/", "pred/", "--predictions")


EVIL = r'''
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))
torch.save({"params": {"x": torch.zeros(2)}, "evil": Evil()}, sys.argv[1], _use_new_zipfile_serialization=False)
'''


def test_wrong_legacy_format_code_running_pickle_is_called_unsafe(runner, proj, env):
    runner.python(EVIL, "legacy.pth", cwd=proj, env=env).passed()
    r = runner.cli("eval", "--checkpoint", "legacy.pth", "--sets", "lqsets/good", "--no-progress", cwd=proj,
                   env=env).usage("UnsafeCheckpointError", "legacy.pth", "posix.system", "ran none of it")
    msg = r.err.strip().splitlines()[-1]
    assert msg.endswith(".safetensors."), msg  # the whole sentence, not cut
    assert not (proj / "pwned").exists()


@pytest.mark.parametrize("prefix", ["_orig_mod.module.", "module._orig_mod.", "module.module."])
def test_wrong_wrapped_nafnet_is_still_a_nafnet(runner, proj, env, prefix):
    import torch

    ck = identity_checkpoint(proj / "id.pth")
    sd = torch.load(ck, weights_only=True)["params"]
    torch.save({"params": {prefix + k: v for k, v in sd.items()}}, proj / "wrapped.pth")
    runner.cli("eval", "--checkpoint", "wrapped.pth", "--sets", "lqsets/good", "--device", "cpu", "--no-progress",
               cwd=proj, env=env).passed("PASSED")
