"""bench/bench_gpu.py keeps working without a GPU: ``--quick`` on the CPU exits 0, lists every
CUDA row as skipped with the reason, runs the CPU side of (a)-(d) at small size and writes its
JSON; and its comparisons (metric dicts, demo verdicts) find the differences they must."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_gpu.py"
REASON = "skipped: no CUDA device (torch.cuda.is_available() is False)"


def _bench_module():
    if "bench_gpu" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_gpu"] = mod  # its dataclass looks its module up by name
        spec.loader.exec_module(mod)
    return sys.modules["bench_gpu"]


@pytest.mark.slow
def test_quick_run_without_cuda(tmp_path):
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU fallback, also on a GPU box
    env.pop("COLORFID_TEST_FAKE_CUDA", None)  # a real "no CUDA", not the test suite's fake one
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and not p.rstrip("/").endswith("fake_cuda"))
    env["COLORFID_CACHE"] = str(tmp_path / "cache")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--threads", "1", "--json", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for section in "abcde":
        assert f"({section}) [cuda]" in text and REASON in text, section
    assert "Traceback" not in proc.stderr and "failed" not in text
    data = json.loads(out.read_text())
    meta, rows = data["meta"], data["rows"]
    assert meta["cuda_available"] is False and meta["device_name"] is None and meta["torch"]
    assert "triton" in meta
    skipped = [r for r in rows if r["device"] == "cuda"]
    assert skipped and all(r["value"] is None and r["note"] == REASON for r in skipped)
    assert {r["section"] for r in skipped} == set("abcde")
    ran = [r for r in rows if r["value"] is not None]
    assert {r["section"] for r in ran} == set("abcd")  # (e) compares two devices: nothing to run alone
    assert all(math.isfinite(r["value"]) and r["value"] >= 0 for r in ran)
    names = " | ".join(r["name"] for r in ran)
    for what in ("ΔE00 eager", "sRGB -> Lab", "image_metrics", "training step, ColorAwareLoss",
                 "ColorAwareLoss share", "aten ops", "Trainer.train_step / bare step"):
        assert what in names, what


def test_relative_difference_of_metric_dicts():
    b = _bench_module()
    nan = float("nan")
    assert b.rel_diff({"a": 1.0, "b": nan, "c": 0.0}, {"a": 1.0, "b": nan, "c": 0.0}) == (0.0, "")
    worst, key = b.rel_diff({"a": 1.0, "b": 2.0}, {"a": 1.0 + 1e-12, "b": 2.2})
    assert key == "b" and worst == pytest.approx(0.2 / 2.2)
    assert b.rel_diff({"a": 1.0}, {"a": nan}) == (math.inf, "a")


def _summary(rows_by_model):
    def gate(rows):
        return SimpleNamespace(passed=all(r["verdict"] == "pass" for r in rows), to_dict=lambda: {"rows": rows})

    return SimpleNamespace(gates={m: gate(rows) for m, rows in rows_by_model.items()})


def test_demo_comparison_finds_changed_verdicts():
    b = _bench_module()
    rows = [{"set": "photos", "metric": "de00_p95", "verdict": "pass", "value": 4.0},
            {"set": "photos", "metric": "psnr", "verdict": "fail_bound", "value": 20.0}]
    same = [dict(r) for r in rows]
    same[0]["value"] = 4.0000001
    diffs, worst, where = b.compare_demos(_summary({"demo_l1": rows}), _summary({"demo_l1": same}))
    assert diffs == [] and worst == pytest.approx(1e-7 / 4.0000001) and where == "demo_l1/photos/de00_p95"
    flipped = [dict(r) for r in rows]
    flipped[1]["verdict"] = "pass"
    diffs, _, _ = b.compare_demos(_summary({"demo_l1": rows}), _summary({"demo_l1": flipped}))
    assert diffs == ["demo_l1/photos/psnr: fail_bound -> pass"]
    diffs, _, _ = b.compare_demos(_summary({"demo_l1": rows}), _summary({"demo_l1": rows[:1]}))
    assert diffs == ["demo_l1/photos/psnr: fail_bound -> None"]


def test_demo_comparison_on_real_gate_reports():
    """The rows as colorfid.gate writes them: a metric gated on two statistics is two verdicts."""
    from colorfid.gate.verdicts import GateReport, GateRow

    b = _bench_module()

    def report(p95_verdict):
        rows = [GateRow("photos", "de00", "mean", 2.0, "<= 3", None, None, "pass"),
                GateRow("photos", "de00", "p95", 5.0, "<= 4", None, None, p95_verdict)]
        return SimpleNamespace(gates={"demo_l1": GateReport(rows, ["photos"])})

    assert b.demo_verdicts(report("fail_bound")) == {("demo_l1", "photos", "de00:mean"): "pass",
                                                     ("demo_l1", "photos", "de00:p95"): "fail_bound"}
    diffs, worst, _ = b.compare_demos(report("fail_bound"), report("pass"))
    assert diffs == ["demo_l1/photos/de00:p95: fail_bound -> pass"] and worst == 0.0
