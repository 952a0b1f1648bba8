"""Tests of colorfid.evaluation: results schema, aggregates, output cache, predictions mode.

Oracles: per-image metrics are compared with colorfid.metrics.image_metrics called directly on
the same pixels (evaluate only orchestrates); aggregates with numpy on the per-image values;
hand-derived cases (identical images: ΔE 0, ratio 1; grey GT: no high-chroma pixels -> null).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorfid.errors import CheckpointError, ConfigError, ShapeError, StressSetError, UnknownNameError
from colorfid.evaluation import (
    AGGREGATE_STATS,
    PSNR_CAP_DB,
    IdentityModel,
    Results,
    evaluate,
    prediction_sets,
)
from colorfid.metrics import METRICS, image_metrics

LUMA = np.array((0.299, 0.587, 0.114))


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB").save(path)


def _gt(seed: int, h=20, w=24, grey=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if grey:
        return np.repeat(rng.uniform(60, 190, (h, w, 1)), 3, axis=2)
    a = np.empty((h, w, 3))
    a[:] = (40, 90, 210)
    a[:, w // 2:] = (30, 170, 80)
    return a * rng.uniform(0.8, 1.0, (h, w, 1))


def make_set(root: Path, name: str, *, factor=0.7, n=3, grey=False, sides=("lq",)) -> Path:
    d = root / name
    for i in range(n):
        g = _gt(i, grey=grey)
        y = (g @ LUMA)[..., None]
        _png(d / "gt" / f"im{i}.png", g)
        for side in sides:
            _png(d / side / f"im{i}.png", y + factor * (g - y))
    return d


def _read(path) -> torch.Tensor:
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


class Counting(nn.Module):
    """Identity that counts forward calls (to see cache hits)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.calls += 1
        return x * self.scale


@pytest.fixture()
def lq_set(tmp_path):
    return make_set(tmp_path / "sets", "walls")


def test_results_schema_v1_and_json_roundtrip(lq_set, tmp_path):
    r = evaluate("identity", [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)  # plain types, no NaN
    assert d["schema"] == "colorfid.results" and d["schema_version"] == 2 and d["aggregate_stats"]["tail95"] == "95 % of images at least this good"
    assert set(d["provenance"]) >= {"model", "checkpoint", "checkpoint_sha256", "colorfid_version", "torch_version",
                                    "device", "dtype", "tile", "overlap"}
    assert d["protocol"]["metrics_version"] == 3 and "CIEDE2000" in d["protocol"]["color_pipeline"]
    s = d["sets"]["walls"]
    assert set(s) >= {"path", "kind", "description", "images", "aggregate", "worst"}
    assert [im["name"] for im in s["images"]] == ["im0", "im1", "im2"]
    im = s["images"][0]
    assert (im["height"], im["width"]) == (20, 24) and set(im["metrics"]) == set(METRICS)
    assert Path(im["output"]).is_file()
    for agg in s["aggregate"].values():
        assert set(agg) == {*AGGREGATE_STATS, "n"}
    assert {w["metric"] for w in s["worst"]} >= {"de00_p95"}
    back = Results.from_dict(json.loads(text))
    assert back.to_dict() == d
    p = r.save(tmp_path / "out" / "r.json")
    assert Results.load(p).to_dict() == d


def test_identity_metrics_equal_direct_metric_calls(lq_set, tmp_path):
    r = evaluate(IdentityModel(), [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    for im in r.sets["walls"]["images"]:
        direct = image_metrics(_read(im["lq"]), _read(im["gt"]))
        for k, v in direct.items():
            got = im["metrics"][k]
            if math.isnan(v):
                assert got is None
            else:
                assert got == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_aggregates_match_numpy(lq_set, tmp_path):
    r = evaluate("identity", [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    s = r.sets["walls"]
    for metric, spec in METRICS.items():
        vals = np.array([im["metrics"][metric] for im in s["images"] if im["metrics"][metric] is not None])
        agg = s["aggregate"][metric]
        assert agg["n"] == len(vals)
        if not len(vals):
            continue
        assert agg["mean"] == pytest.approx(vals.mean())
        assert agg["median"] == pytest.approx(np.median(vals))
        if spec.direction == "lower":
            assert agg["worst"] == pytest.approx(vals.max()) and agg["tail95"] == pytest.approx(np.percentile(vals, 95))
        elif spec.direction == "higher":
            assert agg["worst"] == pytest.approx(vals.min()) and agg["tail95"] == pytest.approx(np.percentile(vals, 5))
        else:
            dev = np.abs(vals - spec.target)
            assert agg["worst"] == pytest.approx(vals[np.argmax(dev)])
            assert abs(agg["tail95"] - spec.target) == pytest.approx(np.percentile(dev, 95))
    worst = [w for w in s["worst"] if w["metric"] == "de00_p95"]
    order = sorted(s["images"], key=lambda im: -im["metrics"]["de00_p95"])
    assert [w["name"] for w in worst] == [im["name"] for im in order[:3]]


def test_identical_and_grey_images_hand_derived(tmp_path):
    same = make_set(tmp_path, "same", factor=1.0, n=2)
    grey = make_set(tmp_path, "grey", factor=1.0, n=2, grey=True)
    r = evaluate("identity", [same, grey], cache_dir=tmp_path / "c", progress=False, device="cpu")
    a = r.sets["same"]["aggregate"]
    assert a["de00_max"]["worst"] == 0.0 and a["sat_ratio_hc"]["mean"] == pytest.approx(1.0)
    assert a["psnr"]["mean"] == PSNR_CAP_DB  # identical: infinite PSNR, recorded as the cap
    g = r.sets["grey"]
    assert all(im["metrics"]["sat_ratio_hc"] is None for im in g["images"])  # no high-chroma pixel
    assert g["aggregate"]["sat_ratio_hc"] == {"mean": None, "median": None, "tail95": None, "worst": None, "n": 0}
    assert "NaN" not in json.dumps(r.to_dict())


def test_output_cache_hits_give_identical_results(lq_set, tmp_path):
    m = Counting()
    r1 = evaluate(m, [lq_set], cache_dir=tmp_path / "c", cache_key="counting-v1", progress=False, device="cpu")
    assert m.calls == 3
    r2 = evaluate(m, [lq_set], cache_dir=tmp_path / "c", cache_key="counting-v1", progress=False, device="cpu")
    assert m.calls == 3  # all from the cache
    assert r1.sets == r2.sets
    # A changed input image is a miss for that image only.
    g = _gt(1)
    _png(lq_set / "lq" / "im1.png", g * 0.5)
    evaluate(m, [lq_set], cache_dir=tmp_path / "c", cache_key="counting-v1", progress=False, device="cpu")
    assert m.calls == 4


def test_unnamed_module_outputs_are_written_not_reused(lq_set, tmp_path):
    m = Counting()
    r = evaluate(m, [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    evaluate(m, [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert m.calls == 6
    im = r.sets["walls"]["images"][0]
    png = Path(im["output"])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[24] == 16  # IHDR bit depth: a 16-bit PNG
    import cv2

    out16 = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64) / 65535.0
    lq = _read(im["lq"]).permute(1, 2, 0).numpy()  # the Counting model is the identity
    assert np.abs(out16 - lq).max() < 1e-4


def test_cache_keeps_raw_out_of_range_output(tmp_path, lq_set):
    class Loud(nn.Module):
        def forward(self, x):
            return x * 2.0 - 0.25

    r1 = evaluate(Loud(), [lq_set], cache_dir=tmp_path / "c", cache_key="loud", progress=False, device="cpu")
    r2 = evaluate(Loud(), [lq_set], cache_dir=tmp_path / "c", cache_key="loud", progress=False, device="cpu")
    a1 = r1.sets["walls"]["aggregate"]["out_of_range_frac"]["mean"]
    assert a1 > 0 and r2.sets["walls"]["aggregate"]["out_of_range_frac"]["mean"] == a1


def test_checkpoint_cache_keyed_by_sha256(lq_set, tmp_path, monkeypatch):
    from colorfid.models import inference
    from colorfid.models.checkpoint import file_sha256, save_model
    from colorfid.models.nafnet import NAFNet

    torch.manual_seed(0)
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    ck = save_model(net, tmp_path / "net.pth")
    calls = []
    real = inference.run_model
    monkeypatch.setattr(inference, "run_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    r1 = evaluate(ck, [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    r2 = evaluate(str(ck), [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert len(calls) == 3
    assert r1.provenance["checkpoint_sha256"] == file_sha256(ck)
    assert r1.sets == r2.sets


def test_predictions_mode_and_overlay_of_bundled_sets(tmp_path, monkeypatch):
    pred_set = make_set(tmp_path / "p", "walls", sides=("pred",))
    r = evaluate(None, [pred_set], progress=False)
    im = r.sets["walls"]["images"][0]
    assert r.sets["walls"]["kind"] == "pred" and im["output"].endswith("pred/im0.png") and im["lq"] is None
    assert r.provenance["model"] == "predictions"
    # A folder named after a bundled set holds predictions for that set's GT.
    golden = tmp_path / "golden"
    make_set(golden / "stress", "tinyset", n=2)
    monkeypatch.setenv("COLORFID_GOLDEN", str(golden))
    preds = tmp_path / "preds" / "tinyset"
    preds.mkdir(parents=True)
    for p in (golden / "stress" / "tinyset" / "gt").iterdir():
        (preds / p.name).write_bytes(p.read_bytes())
    sets = prediction_sets(tmp_path / "preds")
    r = evaluate(None, sets, progress=False)
    assert r.sets["tinyset"]["aggregate"]["de00_max"]["worst"] == 0.0
    (preds / "im1.png").unlink()
    with pytest.raises(StressSetError, match="im1"):
        prediction_sets(tmp_path / "preds")
    with pytest.raises(StressSetError):
        prediction_sets(tmp_path / "nope")
    with pytest.raises(UnknownNameError):
        prediction_sets(pred_set.parent, ["other"])


def test_input_errors(tmp_path, lq_set):
    with pytest.raises(StressSetError, match="pred"):
        evaluate(None, [lq_set], progress=False)

    class Shrink(nn.Module):
        def forward(self, x):
            return x[..., :-2, :]

    with pytest.raises(ShapeError):
        evaluate(Shrink(), [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    with pytest.raises(CheckpointError, match="nope.pth"):
        evaluate(tmp_path / "nope.pth", [lq_set], progress=False, device="cpu")
    with pytest.raises(UnknownNameError):
        evaluate("identity", ["no_such_bundled_set"], progress=False, device="cpu")


def test_results_load_errors(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("{oops")
    with pytest.raises(ConfigError, match="r.json"):
        Results.load(p)
    p.write_text(json.dumps({"schema": "colorfid.results", "schema_version": 9}))
    with pytest.raises(ConfigError, match="schema_version"):
        Results.load(p)


def test_progress_bar_per_set(lq_set, tmp_path, capsys):
    evaluate("identity", [lq_set], cache_dir=tmp_path / "c", progress=True, device="cpu")
    assert "colorfid walls" in capsys.readouterr().err
    evaluate("identity", [lq_set], cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert capsys.readouterr().err == ""


def test_set_protocol_overrides_recorded(tmp_path):
    d = make_set(tmp_path, "strict")
    (d / "set.toml").write_text('description = "x"\n[protocol]\nhc_saturation = 0.3\n')
    r = evaluate("identity", [d], cache_dir=tmp_path / "c", protocol={"hue_chroma_floor": 12.0}, progress=False,
                 device="cpu")
    assert r.sets["strict"]["protocol"]["hc_saturation"] == 0.3
    assert r.sets["strict"]["protocol"]["hue_chroma_floor"] == 12.0
    assert r.protocol["hc_saturation"] == 0.5 and r.sets["strict"]["description"] == "x"


def test_a_device_that_cannot_load_is_not_called_a_corrupt_checkpoint(monkeypatch):
    """A checkpoint that loads on the CPU but fails on the chosen device (a CUDA device torch
    cannot use, say) is a UsageError naming the device, not 'corrupt or not a checkpoint?'."""
    import colorfid.models.checkpoint as ck
    import colorfid.models.inference as inf
    from colorfid.errors import CheckpointError, UsageError
    from colorfid.evaluation.source import resolve_model

    path = Path(__file__).resolve().parents[1] / "golden" / "checkpoints" / "demo_l1.pth"
    real = ck.load_model

    def load_model(p, *a, device=None, **kw):
        if str(device) != "cpu":
            raise AssertionError("Torch not compiled with CUDA enabled")
        return real(p, *a, device=device, **kw)

    monkeypatch.setattr(ck, "load_model", load_model)
    monkeypatch.setattr(inf, "select_device", lambda device=None: torch.device("meta"))
    with pytest.raises(UsageError, match=r"loads on the CPU but not on device 'meta'.*--device cpu"):
        resolve_model(str(path))
    # a file that fails everywhere is still the file's fault
    monkeypatch.setattr(ck, "load_model", lambda *a, **kw: (_ for _ in ()).throw(ValueError("bad pickle")))
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        resolve_model(str(path))
