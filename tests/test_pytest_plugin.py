"""Tests of the colorfid pytest plugin (run through ``pytester``) and of the malformed-input
matrix: every malformed thresholds file, baseline and stress set is a usage error, exit code 4
under pytest and 2 under ``colorfid eval``, and its message names the file and the key.

The stress sets are tiny generated PNGs (24x24): a "good" set whose saved predictions equal
the GT (ΔE 0, ratios 1, by construction) and a "washed" set whose predictions keep 0.6 of the
saturation about BT.601 luma (sat_ratio_hc well below 0.9, by construction).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _images import gt_array as _gt
from _images import png as _png

import colorfid.evaluation  # noqa: F401
import colorfid.gate  # noqa: F401
import colorfid.io  # noqa: F401
import colorfid.models.checkpoint  # noqa: F401
import colorfid.models.inference  # noqa: F401
import colorfid.report  # noqa: F401
import colorfid.stress  # noqa: F401
import tqdm.auto  # noqa: F401
from colorfid import cli

pytest_plugins = ["pytester"]

# The imports above are not unused: pytester's in-process runs drop every module imported during
# a run from sys.modules afterwards, and re-importing C-extension modules (torch, PIL's ImageCms)
# in the next run can crash the interpreter. Importing them here keeps them across runs.

LUMA = np.array((0.299, 0.587, 0.114))

TINY_TOML = """\
[defaults]
de00_p95 = { max = 5.0 }                      # tiny test bound
sat_ratio_hc = { target = 1.0, band = 0.1 }   # tiny test bound
"""




def make_set(root: Path, name: str, *, factor=1.0, grey=False, n=2, side="pred") -> Path:
    d = root / name
    for i in range(n):
        g = _gt(i, grey=grey)
        y = (g @ LUMA)[..., None]
        _png(d / "gt" / f"im{i}.png", g)
        _png(d / side / f"im{i}.png", y + factor * (g - y))
    return d


@pytest.fixture()
def ws(pytester, monkeypatch):
    """pytester's folder with colorfid.toml and sets/{a_washed, b_good} (saved predictions)."""
    root = pytester.path
    make_set(root / "sets", "a_washed", factor=0.6)
    make_set(root / "sets", "b_good")
    (root / "colorfid.toml").write_text(TINY_TOML)
    monkeypatch.setenv("COLORFID_CACHE", str(root / "cache"))
    return root


def _text(result) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


# --------------------------------------------------------------------------- inert / items


def test_inert_without_options(pytester):
    pytester.makepyfile(
        """
        import sys
        def test_plain():
            assert "colorfid.gate" not in sys.modules and "colorfid.evaluation" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "colorfid:" not in result.stdout.str()


def test_one_item_per_set_and_selection(ws, pytester):
    pytester.makepyfile("def test_unit():\n    pass\n")
    r = pytester.runpytest("--colorfid-predictions", "sets", "--collect-only", "-q")
    out = r.stdout.str()
    assert "colorfid::a_washed" in out and "colorfid::b_good" in out
    r = pytester.runpytest("--colorfid-predictions", "sets", "-k", "b_good")
    r.assert_outcomes(passed=1, deselected=2)
    r = pytester.runpytest("--colorfid-predictions", "sets", "-m", "not colorfid")
    r.assert_outcomes(passed=1, deselected=2)
    r = pytester.runpytest("--colorfid-predictions", "sets", "-m", "colorfid", "-x")
    r.assert_outcomes(failed=1, deselected=1)  # a_washed fails first, -x stops before b_good
    assert r.ret == 1


def test_failure_shows_metric_table_not_traceback(ws, pytester):
    r = pytester.runpytest("--colorfid-predictions", "sets", "-p", "no:cacheprovider")
    r.assert_outcomes(failed=1, passed=1)
    assert r.ret == 1
    out = r.stdout.str()
    assert "colorfid gate: set 'a_washed' FAILED" in out
    for word in ("metric", "stat", "value", "bound", "baseline", "verdict", "FAIL_BOUND", "1 ± 0.1",
                 "worst images", "a_washed/pred/im"):
        assert word in out, word
    assert "Traceback" not in out and "def runtest" not in out
    assert "a_washed                 FAIL" in out and "b_good                   PASS" in out  # summary


def test_baseline_update_regression_and_keep(ws, pytester):
    args = ["--colorfid-predictions", "sets", "--colorfid-baseline", "base.json"]
    r = pytester.runpytest(*args, "--colorfid-update-baseline", "-k", "b_good")
    r.assert_outcomes(passed=1, deselected=1)
    data = json.loads((ws / "base.json").read_text())
    assert list(data["sets"]) == ["b_good"]  # only the set that ran
    r = pytester.runpytest(*args, "-k", "b_good")
    r.assert_outcomes(passed=1, deselected=1)
    # A baseline that was better than this run: regression.
    data["sets"]["b_good"]["metrics"]["de00_p95"]["mean"] = -1.0
    (ws / "base.json").write_text(json.dumps(data))
    r = pytester.runpytest(*args, "-k", "b_good")
    r.assert_outcomes(failed=1, deselected=1)
    assert "FAIL_REGRESSION" in r.stdout.str()
    # Updating another set keeps b_good's (edited) entry.
    r = pytester.runpytest(*args, "--colorfid-update-baseline", "-k", "a_washed")
    r.assert_outcomes(failed=1, deselected=1)  # bounds still apply while updating
    data = json.loads((ws / "base.json").read_text())
    assert sorted(data["sets"]) == ["a_washed", "b_good"]
    assert data["sets"]["b_good"]["metrics"]["de00_p95"]["mean"] == -1.0


def test_ini_keys_activate_and_configure(ws, pytester):
    (ws / "thresholds").mkdir()
    shutil.move(ws / "colorfid.toml", ws / "thresholds" / "gate.toml")
    pytester.makeini(
        """
        [pytest]
        colorfid_predictions = sets
        colorfid_config = thresholds/gate.toml
        colorfid_sets = b_good
        """
    )
    r = pytester.runpytest()
    r.assert_outcomes(passed=1)
    assert "thresholds/gate.toml" in r.stdout.str()


def test_checkpoint_alias_yields_to_another_plugin(ws, pytester):
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--checkpoint", default=None)

        def test_dummy():
            pass
        """
    )
    pytester.makepyfile(
        """
        def test_theirs(request):
            assert request.config.getoption("checkpoint") == "theirs.ckpt"
        """
    )
    r = pytester.runpytest("--checkpoint", "theirs.ckpt")
    r.assert_outcomes(passed=1)  # their option; colorfid stays inert
    r = pytester.runpytest("--checkpoint", "theirs.ckpt", "--colorfid-predictions", "sets", "-k", "good or theirs")
    r.assert_outcomes(passed=2, deselected=1)


def _identity_checkpoint(path: Path) -> Path:
    import torch

    from colorfid.models.checkpoint import save_model
    from colorfid.models.nafnet import NAFNet

    torch.manual_seed(0)
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    with torch.no_grad():
        net.ending.weight.zero_()
        net.ending.bias.zero_()  # NAFNet's global residual: output = input
    return save_model(net, path)


def test_checkpoint_and_fixtures(ws, pytester):
    make_set(ws / "lqsets", "lq_good", side="lq")
    _identity_checkpoint(ws / "net.pth")
    pytester.makepyfile(
        """
        import pytest

        def test_model(colorfid_model):
            assert colorfid_model.ending.weight.abs().sum() == 0

        def test_eval_and_gate(colorfid_evaluate, colorfid_gate):
            results = colorfid_evaluate()
            report = colorfid_gate(results)
            assert report.passed and results.set_names == ["lq_good"]
            washed = colorfid_evaluate(sets=["sets/a_washed"], model="predictions")
            report = colorfid_gate(washed, check=False)
            assert not report.passed
            with pytest.raises(pytest.fail.Exception):
                colorfid_gate(washed)
        """
    )
    r = pytester.runpytest("--checkpoint", "net.pth", "--colorfid-sets", "lqsets/lq_good", "-p", "no:cacheprovider",
                           "--colorfid-device", "cpu", "--colorfid-cache", "mycache")
    r.assert_outcomes(passed=3)
    assert "sha256" in r.stdout.str() and "weights params)" in r.stdout.str()  # a params-only file: params
    assert list((ws / "mycache").glob("*/lq_good/im0.npy"))  # outputs cached where asked
    # --colorfid-weights picks the entry (params_ema falls back to params here); bad names: usage error
    r = pytester.runpytest("--checkpoint", "net.pth", "--colorfid-sets", "lqsets/lq_good", "-p", "no:cacheprovider",
                           "--colorfid-device", "cpu", "--colorfid-weights", "params", "-k", "colorfid")
    r.assert_outcomes(passed=1)
    assert pytester.runpytest("--checkpoint", "net.pth", "--colorfid-device", "cpu", "--colorfid-weights",
                              "ema").ret == pytest.ExitCode.USAGE_ERROR
    # The same fixtures without --checkpoint: colorfid_model skips.
    r = pytester.runpytest("-k", "test_model")
    r.assert_outcomes(skipped=1)


def test_report_hook(ws, pytester):
    args = ["--colorfid-predictions", "sets", "-k", "b_good", "--colorfid-baseline", "base.json"]
    r = pytester.runpytest(*args, "--colorfid-update-baseline", "--colorfid-report", "rep")
    r.assert_outcomes(passed=1, deselected=1)
    assert (ws / "rep" / "index.html").is_file() and (ws / "rep" / "gate.json").is_file()
    assert "report:" in r.stdout.str()
    r = pytester.runpytest(*args, "--colorfid-report", "rep2")
    r.assert_outcomes(passed=1, deselected=1)
    gate = json.loads((ws / "rep2" / "gate.json").read_text())
    assert gate["baseline"].endswith("base.json") and all(row["baseline"] is not None for row in gate["rows"])


@pytest.mark.slow
def test_xdist_workers_send_plain_results_controller_writes(ws, pytester):
    r = pytester.runpytest_subprocess(
        "-n", "2", "--colorfid-predictions", "sets", "--colorfid-baseline", "base.json",
        "--colorfid-update-baseline", "-p", "no:cacheprovider",
    )
    r.assert_outcomes(failed=1, passed=1)
    assert "FAIL_BOUND" in r.stdout.str()
    data = json.loads((ws / "base.json").read_text())
    assert sorted(data["sets"]) == ["a_washed", "b_good"]
    # A usage error met by a worker (empty mask) still ends the run with exit code 4.
    make_set(ws / "sets", "c_grey", grey=True)
    r = pytester.runpytest_subprocess("-n", "2", "--colorfid-predictions", "sets", "-p", "no:cacheprovider")
    assert r.ret == 4, _text(r)
    assert "empty mask" in _text(r)


# --------------------------------------------------------------------------- malformed inputs


def _cfg(text):
    def setup(ws):
        (ws / "colorfid.toml").write_text(text)
    return setup


def _baseline(text_or_fn):
    def setup(ws):
        from colorfid.evaluation import protocol_dict
        from colorfid.metrics import MetricProtocol

        proto = protocol_dict(MetricProtocol())
        text = text_or_fn(proto) if callable(text_or_fn) else text_or_fn
        (ws / "baseline.json").write_text(text)
    return setup


def _good_baseline(proto, **over):
    metrics = {"de00_p95": {"mean": 0.0, "median": 0.0, "p95": 0.0, "worst": 0.0, "n": 2}}
    return json.dumps({"schema": "colorfid.baseline", "schema_version": 1,
                       "sets": {"b_good": {"protocol": {**proto, **over}, "images": 2, "metrics": metrics}}})


def _mutate_set(fn):
    return fn


def _extra_image(ws):
    _png(ws / "sets" / "b_good" / "pred" / "extra.png", _gt(5))


def _size_mismatch(ws):
    _png(ws / "sets" / "b_good" / "gt" / "im0.png", _gt(0, h=30, w=30))


def _corrupt_image(ws):
    (ws / "sets" / "b_good" / "gt" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")


def _empty_set(ws):
    (ws / "sets" / "empty" / "gt").mkdir(parents=True)
    (ws / "sets" / "empty" / "pred").mkdir(parents=True)


def _grey_set(ws):
    make_set(ws / "sets", "c_grey", grey=True)


def _bad_checkpoint(ws):
    (ws / "bad.pth").write_bytes(b"this is not a checkpoint")
    make_set(ws / "lqsets", "lq_good", side="lq")


P = ["--colorfid-predictions", "sets"]
C = ["--predictions", "sets"]

# id, setup, pytest args, cli args, fragments the message must contain
MALFORMED = [
    ("unknown_metric", _cfg("[defaults]\nde00_p59 = { max = 1 }\n"), P, C, ["colorfid.toml", "defaults.de00_p59"]),
    ("unknown_bound_key", _cfg("[defaults]\nde00_p95 = { maxx = 1 }\n"), P, C, ["colorfid.toml", "defaults.de00_p95.maxx"]),
    ("unknown_top_key", _cfg("[default]\nde00_p95 = { max = 1 }\n"), P, C, ["colorfid.toml", "'default'"]),
    ("unknown_set_section", _cfg(TINY_TOML + "[sets.b_goood]\nde00_p95 = { max = 1 }\n"), P, C,
     ["colorfid.toml", "sets.b_goood"]),
    ("string_bound", _cfg('[defaults]\nde00_p95 = { max = "5" }\n'), P, C, ["colorfid.toml", "defaults.de00_p95.max"]),
    ("bool_bound", _cfg("[defaults]\nde00_p95 = { max = true }\n"), P, C, ["colorfid.toml", "defaults.de00_p95.max"]),
    ("nan_bound", _cfg("[defaults]\nde00_p95 = { max = nan }\n"), P, C, ["colorfid.toml", "defaults.de00_p95.max"]),
    ("min_above_max", _cfg("[defaults]\npsnr = { min = 40, max = 30 }\n"), P, C, ["colorfid.toml", "defaults.psnr"]),
    ("negative_band", _cfg("[defaults]\nsat_ratio_hc = { band = -0.1 }\n"), P, C, ["colorfid.toml", "sat_ratio_hc.band"]),
    ("target_without_band", _cfg("[defaults]\nsat_ratio_hc = { target = 1 }\n"), P, C,
     ["colorfid.toml", "defaults.sat_ratio_hc.target"]),
    ("bad_stat", _cfg('[defaults]\nde00_p95 = { max = 5, stat = "p50" }\n'), P, C, ["colorfid.toml", "de00_p95.stat"]),
    ("entry_not_table", _cfg("[defaults]\nde00_p95 = 5\n"), P, C, ["colorfid.toml", "defaults.de00_p95"]),
    ("empty_entry", _cfg("[defaults]\nde00_p95 = {}\n"), P, C, ["colorfid.toml", "defaults.de00_p95"]),
    ("toml_syntax", _cfg("[defaults]\nde00_p95 = { max = }\n"), P, C, ["colorfid.toml", "line 2"]),
    ("unknown_protocol_key", _cfg("[protocol]\nhc_sat = 0.5\n" + TINY_TOML), P, C, ["colorfid.toml", "hc_sat"]),
    ("protocol_not_number", _cfg('[protocol]\nhc_saturation = "high"\n' + TINY_TOML), P, C,
     ["colorfid.toml", "hc_saturation"]),
    ("missing_set_path", _cfg('stress_sets = ["./nope"]\n' + TINY_TOML), P, C, ["colorfid.toml", "stress_sets[0]"]),
    ("vacuous_set", _cfg(TINY_TOML + "[sets.b_good]\nde00_p95 = false\nsat_ratio_hc = false\n"), P + ["--colorfid-sets", "b_good"],
     C + ["--sets", "b_good"], ["colorfid.toml", "sets.b_good", "vacuous"]),
    ("missing_config", None, P + ["--colorfid-config", "nope.toml"], C + ["--config", "nope.toml"], ["nope.toml"]),
    ("unknown_set_selected", None, P + ["--colorfid-sets", "nope"], C + ["--sets", "nope"], ["nope", "b_good"]),
    ("missing_baseline", None, P + ["--colorfid-baseline", "missing.json"], C + ["--baseline", "missing.json"],
     ["missing.json"]),
    ("corrupt_baseline", _baseline("{not json"), P + ["--colorfid-baseline", "baseline.json"],
     C + ["--baseline", "baseline.json"], ["baseline.json", "JSON"]),
    ("baseline_wrong_schema", _baseline('{"schema": "something", "sets": {}}'), P + ["--colorfid-baseline", "baseline.json"],
     C + ["--baseline", "baseline.json"], ["baseline.json", "'schema'"]),
    ("baseline_non_number", _baseline(lambda p: _good_baseline(p).replace('"mean": 0.0', '"mean": "zero"')),
     P + ["--colorfid-baseline", "baseline.json"], C + ["--baseline", "baseline.json"],
     ["baseline.json", "sets.b_good.metrics.de00_p95.mean"]),
    ("baseline_other_protocol", _baseline(lambda p: _good_baseline(p, hc_saturation=0.6)),
     P + ["--colorfid-baseline", "baseline.json"], C + ["--baseline", "baseline.json"],
     ["baseline.json", "sets.b_good.protocol.hc_saturation"]),
    ("update_without_path", None, P + ["--colorfid-update-baseline"], C + ["--update-baseline"], ["baseline path"]),
    ("set_unmatched_names", _extra_image, P, C, ["b_good", "extra"]),
    ("set_size_mismatch", _size_mismatch, P, C, ["b_good", "size mismatch", "im0"]),
    ("set_unreadable_image", _corrupt_image, P, C, ["b_good", "unreadable", "im1"]),
    ("set_empty", _empty_set, P, C, ["empty", "no images"]),
    ("predictions_folder_missing", None, ["--colorfid-predictions", "nope"], ["--predictions", "nope"], ["nope"]),
    ("empty_mask_at_run_time", _grey_set, P + ["--colorfid-sets", "c_grey"], C + ["--sets", "c_grey"],
     ["colorfid.toml", "defaults.sat_ratio_hc", "empty mask", "c_grey"]),
    ("corrupt_checkpoint", _bad_checkpoint, ["--checkpoint", "bad.pth", "--colorfid-sets", "lqsets/lq_good"],
     ["--checkpoint", "bad.pth", "--sets", "lqsets/lq_good"], ["bad.pth"]),
    ("missing_checkpoint", None, ["--checkpoint", "nope.pth"], ["--checkpoint", "nope.pth"], ["nope.pth"]),
]


@pytest.mark.parametrize("case,setup,pargs,cargs,frags", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_usage_error_4_pytest_2_cli(ws, pytester, monkeypatch, capsys, case, setup, pargs, cargs, frags):
    if setup is not None:
        setup(ws)
    r = pytester.runpytest(*pargs, "-p", "no:cacheprovider")
    text = _text(r)
    assert r.ret == 4, text
    for f in frags:
        assert f in text, (f, text)
    assert "passed" not in r.stdout.str().splitlines()[-1] if r.stdout.lines else True
    capsys.readouterr()
    monkeypatch.chdir(ws)
    code = cli.main(["eval", *cargs, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    for f in frags:
        assert f in err, (f, err)


def test_at_least_twenty_malformed_cases():
    assert len(MALFORMED) >= 20
