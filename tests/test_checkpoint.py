"""Checkpoints: layouts, safety (no code runs), config inference, mismatch reports, atomic saves."""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from colorfid.errors import CheckpointError, UnsafeCheckpointError, UsageError
from colorfid.models.checkpoint import (
    file_sha256,
    infer_nafnet_config,
    load_model,
    read_state_dict,
    save_model,
)
from colorfid.models.nafnet import NAFNet, NAFNetLocal

GOLDEN_KEYS = Path(__file__).resolve().parents[1] / "golden" / "reference" / "nafnet_width32_keys.txt"
CFG = dict(img_channel=3, width=8, middle_blk_num=2, enc_blk_nums=[1, 0, 2], dec_blk_nums=[2, 1, 1])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int = 0) -> NAFNet:
    torch.manual_seed(seed)
    m = NAFNet(**CFG)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.3)
    return m


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Evil:
    """Unpickling this object would create ``marker`` (it runs ``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------


def test_roundtrip_infers_config_and_returns_eval_model(tmp_path):
    src = _model()
    path = save_model(src, tmp_path / "net_g_20000.pth")
    assert path == tmp_path / "net_g_20000.pth"
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["params"]  # BasicSR's layout
    model = load_model(path)
    assert type(model) is NAFNet and not model.training
    assert model.config == {**CFG, "enc_blk_nums": [1, 0, 2], "dec_blk_nums": [2, 1, 1]}
    assert _same_weights(model, src)
    x = torch.rand(1, 3, 20, 18)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src.eval()(x))


@pytest.mark.parametrize(
    "layout,param_key,expect",
    [
        ("params", "params", "a"),
        ("both", "params", "a"),
        ("both", "params_ema", "b"),
        ("params", "params_ema", "a"),  # BasicSR's fallback: params_ema missing -> params
        ("ema_only", "params", "b"),  # and the other way round
        ("bare", "params", "a"),
        ("bare", None, "a"),
        ("module", "params", "a"),
        ("state_dict", "params", "a"),
    ],
)
def test_layouts(tmp_path, layout, param_key, expect):
    a, b = _model(0), _model(1)
    sa, sb = a.state_dict(), b.state_dict()
    obj = {
        "params": {"params": sa},
        "both": {"params": sa, "params_ema": sb},
        "ema_only": {"params_ema": sb},
        "bare": sa,
        "module": {"params": OrderedDict((f"module.{k}", v) for k, v in sa.items())},
        "state_dict": {"state_dict": sa, "epoch": 3},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = load_model(path, param_key=param_key)
    assert _same_weights(model, a if expect == "a" else b)


def test_read_state_dict_reports_key_used(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"params": _model().state_dict()}, path)
    _, used = read_state_dict(path, param_key="params_ema", return_key=True)
    assert used == "params"


def test_safetensors_and_legacy_format(tmp_path):
    src = _model(2)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, st)
    assert _same_weights(load_model(st), src)
    saved = save_model(src, tmp_path / "again.safetensors")
    assert _same_weights(load_model(saved), src)
    legacy = tmp_path / "legacy.pth"
    torch.save({"params": src.state_dict()}, legacy, _use_new_zipfile_serialization=False)
    assert _same_weights(load_model(legacy), src)


def test_tlc_and_device(tmp_path):
    path = save_model(_model(), tmp_path / "m.pth")
    model = load_model(path, tlc={"train_size": 64}, device="cpu")
    assert isinstance(model, NAFNetLocal)
    assert next(model.parameters()).device.type == "cpu"


def test_factory_string_and_callable(tmp_path):
    plain = NAFNet()  # the defaults: width 16, one middle block, no stages
    path = save_model(plain, tmp_path / "p.pth")
    loaded = load_model(path, factory="colorfid.models.nafnet:NAFNet")
    assert _same_weights(loaded, plain)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    cpath = save_model(conv, tmp_path / "conv.pth")
    got = load_model(cpath, factory=lambda: torch.nn.Conv2d(3, 3, 3, padding=1))
    assert _same_weights(got, conv)
    with pytest.raises(CheckpointError, match="factory"):
        load_model(cpath)  # not a NAFNet and no factory: say how to fix it
    with pytest.raises(UsageError, match="NAFNetLocal"):  # lists the names the module has
        load_model(path, factory="colorfid.models.nafnet:NoSuchNet")
    with pytest.raises(UsageError, match="no_such_module"):
        load_model(path, factory="no_such_module:build")


# ---------------------------------------------------------------------------------------------
# safety
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw_pickle"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"params": _Evil(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    elif fmt == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafeCheckpointError, match="evil.pth") as info:
        load_model(path)
    assert "open" in str(info.value)  # names the offending global
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not marker.exists()
    # the file really is dangerous: an unrestricted unpickler runs the payload
    if fmt == "raw_pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_corrupt_truncated_missing(tmp_path):
    good = save_model(_model(), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 10)
    for path in (truncated, garbage, bad_st, tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError, match=path.name) as info:
            load_model(path)
        assert not isinstance(info.value, UnsafeCheckpointError)
    notdict = tmp_path / "list.pth"
    torch.save([1, 2, 3], notdict)
    with pytest.raises(CheckpointError, match="list"):
        load_model(notdict)
    nosd = tmp_path / "nosd.pth"
    torch.save({"iter": 5, "optimizers": []}, nosd)
    with pytest.raises(CheckpointError, match="iter"):  # lists the top-level keys found
        load_model(nosd)


def test_mismatch_lists_missing_unexpected_and_shape_conflicts(tmp_path):
    sd = _model().state_dict()
    del sd["ending.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["intro.bias"] = torch.zeros(9)
    path = tmp_path / "bad.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, factory=lambda: NAFNet(**CFG))
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "missing keys (1): ending.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "intro.bias: checkpoint (9,) vs model (8,)" in msg


# ---------------------------------------------------------------------------------------------
# config inference on the official key list
# ---------------------------------------------------------------------------------------------


def test_infer_config_from_official_width32_shapes():
    sd = {}
    for line in GOLDEN_KEYS.read_text().splitlines():
        key, shape = line.split("\t")
        sd[key] = torch.empty([int(s) for s in shape.strip("[]").split(",")], device="meta")
    cfg = infer_nafnet_config(sd)
    assert cfg == {"img_channel": 3, "width": 32, "middle_blk_num": 12,
                   "enc_blk_nums": [2, 2, 4, 8], "dec_blk_nums": [2, 2, 2, 2]}


def test_infer_config_gopro_like_and_greyscale():
    cfg = dict(img_channel=1, width=4, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 3], dec_blk_nums=[1, 1, 1, 1])
    with torch.device("meta"):
        sd = NAFNet(**cfg).state_dict()
    assert infer_nafnet_config(sd) == cfg
    with pytest.raises(CheckpointError, match="intro.weight"):
        infer_nafnet_config({"conv.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------------------------
# saving and hashing
# ---------------------------------------------------------------------------------------------


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.pth"
    first = _model(0)
    save_model(first, path)
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CheckpointError, match="disk full"):
        save_model(_model(1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pth"]  # no temporary left behind
    assert _same_weights(load_model(path), first)


def test_save_strips_data_parallel_prefix(tmp_path, monkeypatch):
    # the wrapper as on a CPU-only machine (on a GPU box DataParallel would move the model to cuda:0)
    # (the module, not the function torch.nn.parallel.data_parallel that shadows it)
    monkeypatch.setattr(importlib.import_module("torch.nn.parallel.data_parallel"), "_get_available_device_type",
                        lambda: None)
    wrapped = torch.nn.DataParallel(_model())
    assert next(wrapped.parameters()).device.type == "cpu"
    path = save_model(wrapped, tmp_path / "dp.pth")
    keys = list(torch.load(path, weights_only=True)["params"])
    assert keys and not any(k.startswith("module.") for k in keys)


def test_file_sha256_matches_published_vector(tmp_path):
    p = tmp_path / "abc.bin"
    p.write_bytes(b"abc")  # FIPS 180-2, appendix B.1
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    big.write_bytes(data)
    assert file_sha256(big, chunk_size=1 << 16) == hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointError, match="nope"):
        file_sha256(tmp_path / "nope")
