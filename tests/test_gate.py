"""Tests of colorfid.gate: thresholds parsing, verdicts, baselines, the CLI, and the figure:
the bundled thresholds fail the identity and a desaturating model on ``saturated_paint`` and
pass a model that inverts the set's documented degradation.

Oracles: hand-built results dicts (values chosen by hand, verdicts derived by hand from the
rules in the module docstring), and the set's own ``[degradation]`` table (the restoring model
is its exact inverse, written here from the table, not from colorfid code).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorfid import cli
from colorfid.errors import BaselineError, ConfigError, StressSetError, UnknownNameError, UsageError
from colorfid.evaluation import AGGREGATE_STATS, METRICS_VERSION, Results, protocol_dict
from colorfid.gate import (
    Baseline,
    GateReport,
    judge,
    load_baseline,
    load_thresholds,
    parse_thresholds,
    plan_gate,
    write_baseline,
)
from colorfid.metrics import METRICS, MetricProtocol

REPO = Path(__file__).resolve().parents[1]
GOLDEN_TOML = REPO / "golden" / "colorfid.toml"

# --------------------------------------------------------------------------- helpers


def _proto(**over) -> dict:
    return protocol_dict(MetricProtocol.from_dict({**MetricProtocol().as_dict(), **over}))


def _agg(v, n=3):
    return {"mean": v, "median": v, "tail95": v, "worst": v, "n": 0 if v is None else n}


def _results(sets: dict[str, dict[str, float | None]], *, n_images=3, nonfinite=0.0, protocol=None) -> Results:
    """Hand-made results: every aggregate stat of a metric is the given value."""
    proto = protocol or _proto()
    out = {}
    for name, metrics in sets.items():
        images = [
            {"name": f"im{i}", "gt": f"/x/gt/im{i}.png", "lq": None, "output": None, "height": 4, "width": 4,
             "metrics": {**metrics, "nonfinite_count": nonfinite}}
            for i in range(n_images)
        ]
        out[name] = {
            "path": f"/sets/{name}", "kind": "pred", "description": "", "images": images,
            "aggregate": {k: _agg(v, n_images) for k, v in {**metrics, "nonfinite_count": nonfinite}.items()},
            "worst": [], "protocol": proto,
        }
    return Results(provenance={"model": "hand"}, protocol=proto, sets=out)


def _th(text: str, tmp_path: Path, name: str = "colorfid.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return load_thresholds(p)


# --------------------------------------------------------------------------- parsing


def test_parse_merges_per_set_over_defaults(tmp_path):
    th = _th(
        """
        [defaults]
        de00_p95 = { max = 10.0, worse_abs = 0.5 }
        sat_ratio_hc = { target = 1.0, band = 0.10, worse_abs = 0.02, stat = "p95" }
        psnr = { min = 20.0 }
        [sets.a]
        sat_ratio_hc = { band = 0.05 }      # target from the registry (1.0); slack + stat kept
        psnr = false                        # switched off for set a
        de00_p95 = { worse_abs = 1.0 }      # limits kept, slack replaced
        """,
        tmp_path,
    )
    a = th.bounds_for("a")
    assert set(a) == {"de00_p95", "sat_ratio_hc"}
    assert (a["sat_ratio_hc"].target, a["sat_ratio_hc"].band, a["sat_ratio_hc"].worse_abs, a["sat_ratio_hc"].stat) == (
        1.0, 0.05, 0.02, "tail95")  # "p95", the statistic's older name, reads as tail95
    assert (a["de00_p95"].max, a["de00_p95"].worse_abs) == (10.0, 1.0)
    other = th.bounds_for("b")
    assert other["sat_ratio_hc"].band == 0.10 and other["psnr"].min == 20.0
    assert a["sat_ratio_hc"].key == "sets.a.sat_ratio_hc"
    assert other["psnr"].key == "defaults.psnr"


def test_pyproject_tool_table_and_prefix_in_messages(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.colorfid.defaults]\nde00_p95 = { maxx = 3 }\n")
    with pytest.raises(ConfigError) as e:
        load_thresholds(tmp_path / "pyproject.toml")
    assert "pyproject.toml" in str(e.value) and "tool.colorfid.defaults.de00_p95.maxx" in str(e.value)
    (tmp_path / "pyproject.toml").write_text("[tool.colorfid.defaults]\nde00_p95 = { max = 3 }\n")
    th = load_thresholds(None, search_dir=tmp_path)
    assert th.bounds_for("x")["de00_p95"].max == 3.0


BAD_CONFIGS = [
    ("unknown_metric", "[defaults]\nde00_p59 = { max = 1 }\n", UnknownNameError, "defaults.de00_p59"),
    ("unknown_bound_key", "[defaults]\nde00_p95 = { maxx = 1 }\n", ConfigError, "defaults.de00_p95.maxx"),
    ("unknown_top_key", "[default]\nde00_p95 = { max = 1 }\n", ConfigError, "'default'"),
    ("string_bound", '[defaults]\nde00_p95 = { max = "10" }\n', ConfigError, "defaults.de00_p95.max"),
    ("bool_bound", "[defaults]\nde00_p95 = { max = true }\n", ConfigError, "defaults.de00_p95.max"),
    ("nan_bound", "[defaults]\nde00_p95 = { max = nan }\n", ConfigError, "defaults.de00_p95.max"),
    ("min_above_max", "[defaults]\npsnr = { min = 30, max = 20 }\n", ConfigError, "defaults.psnr"),
    ("negative_band", "[defaults]\nsat_ratio_hc = { band = -0.1 }\n", ConfigError, "defaults.sat_ratio_hc.band"),
    ("target_without_band", "[defaults]\nsat_ratio_hc = { target = 1.0 }\n", ConfigError, "defaults.sat_ratio_hc.target"),
    ("band_without_target", "[defaults]\nde00_p95 = { band = 1.0 }\n", ConfigError, "defaults.de00_p95.band"),
    ("bad_stat", '[defaults]\nde00_p95 = { max = 1, stat = "p50" }\n', ConfigError, "defaults.de00_p95.stat"),
    ("entry_not_table", "[defaults]\nde00_p95 = 5.0\n", ConfigError, "defaults.de00_p95"),
    ("empty_entry", "[defaults]\nde00_p95 = {}\n", ConfigError, "defaults.de00_p95"),
    ("only_stat", '[defaults]\nde00_p95 = { stat = "mean" }\n', ConfigError, "defaults.de00_p95"),
    ("toml_syntax", "[defaults]\nde00_p95 = { max = }\n", ConfigError, "line 2"),
    ("unknown_protocol_key", "[protocol]\nhc_sat = 0.5\n", ConfigError, "hc_sat"),
    ("protocol_not_number", '[protocol]\nhc_saturation = "high"\n', ConfigError, "hc_saturation"),
    ("protocol_fixed_key", "[protocol]\nmetrics_version = 2\n", ConfigError, "protocol.metrics_version"),
    ("set_section_not_table", "[sets]\na = 3\n", ConfigError, "sets.a"),
    ("per_set_unknown_metric", "[sets.a]\nsat_ratio = { max = 1 }\nhue = { max = 1 }\n", UnknownNameError, "sets.a.hue"),
    ("missing_set_path", 'stress_sets = ["./nope"]\n', StressSetError, "stress_sets[0]"),
    ("allow_missing_not_bool", 'allow_missing_baseline = "yes"\n', ConfigError, "allow_missing_baseline"),
    ("empty_limits", "[defaults]\npsnr = { min = 30, target = 20, band = 1 }\n", ConfigError, "defaults.psnr"),
]


@pytest.mark.parametrize("case,text,exc,key", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_malformed_thresholds_name_file_and_key(tmp_path, case, text, exc, key):
    with pytest.raises(exc) as e:
        _th(text, tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, UsageError)
    assert "colorfid.toml" in msg and key in msg, msg


def test_unknown_metric_lists_known_names(tmp_path):
    with pytest.raises(UnknownNameError) as e:
        _th("[defaults]\nsat_ratio_hcc = { max = 1 }\n", tmp_path)
    assert "sat_ratio_hc" in str(e.value) and "de00_p95" in str(e.value)


def test_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load_thresholds(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- verdicts


def test_verdicts_follow_registry_direction(tmp_path):
    th = _th(
        """
        [defaults]
        de00_p95 = { max = 10.0 }
        psnr = { min = 20.0 }
        sat_ratio_hc = { target = 1.0, band = 0.1 }
        """,
        tmp_path,
    )
    assert METRICS["de00_p95"].direction == "lower" and METRICS["psnr"].direction == "higher"
    r = _results({
        "good": {"de00_p95": 9.99, "psnr": 20.01, "sat_ratio_hc": 0.91},
        "bad": {"de00_p95": 10.01, "psnr": 19.99, "sat_ratio_hc": 0.89},
        "edge": {"de00_p95": 10.0, "psnr": 20.0, "sat_ratio_hc": 1.1},
    })
    rep = judge(r, th, known_sets=[])
    v = {(row.set, row.metric): row.verdict for row in rep.rows}
    assert all(v[("good", m)] == "pass" for m in ("de00_p95", "psnr", "sat_ratio_hc"))
    assert all(v[("bad", m)] == "fail_bound" for m in ("de00_p95", "psnr", "sat_ratio_hc"))
    assert all(v[("edge", m)] == "pass" for m in ("de00_p95", "psnr", "sat_ratio_hc"))  # inclusive bounds
    assert not rep.passed and rep.set_passed("good") and not rep.set_passed("bad")
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["sets"] == {"good": "pass", "bad": "fail", "edge": "pass"}
    assert GateReport.from_dict(d).to_dict() == d


def test_regression_slack_and_improvements(tmp_path):
    th = _th(
        """
        [defaults]
        de00_p95 = { max = 10.0, worse_abs = 0.5 }
        psnr = { min = 20.0, worse_rel = 0.1 }
        sat_ratio_hc = { target = 1.0, band = 0.2, worse_abs = 0.02 }
        """,
        tmp_path,
    )
    base = Baseline.from_results(_results({"s": {"de00_p95": 5.0, "psnr": 30.0, "sat_ratio_hc": 0.95}}))
    cases = [
        # (de00_p95, psnr, sat_ratio_hc) -> expected verdicts
        ((5.5, 27.0, 0.93), ("pass", "pass", "pass")),  # exactly at the slack: 0.5, 3 dB, 0.02
        ((5.51, 26.9, 0.92), ("fail_regression",) * 3),
        ((4.0, 35.0, 1.02), ("improved",) * 3),  # |1.02 - 1| < |0.95 - 1| by > 0.02: better
        ((5.0, 30.0, 1.05), ("pass",) * 3),  # same distance from the target on the other side
        ((12.0, 40.0, 0.5), ("fail_bound", "improved", "fail_bound")),
    ]
    for values, expected in cases:
        r = _results({"s": dict(zip(("de00_p95", "psnr", "sat_ratio_hc"), values))})
        rows = {row.metric: row for row in judge(r, th, base, known_sets=[]).rows}
        got = tuple(rows[m].verdict for m in ("de00_p95", "psnr", "sat_ratio_hc"))
        assert got == expected, (values, got)
        assert rows["de00_p95"].baseline == 5.0
        assert math.isclose(rows["de00_p95"].delta, values[0] - 5.0)


def test_improvement_never_fails_and_no_slack_is_strict(tmp_path):
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n", tmp_path)
    base = Baseline.from_results(_results({"s": {"de00_p95": 5.0}}))
    assert judge(_results({"s": {"de00_p95": 0.1}}), th, base, known_sets=[]).passed
    rep = judge(_results({"s": {"de00_p95": 5.001}}), th, base, known_sets=[])
    assert rep.rows[0].verdict == "fail_regression"
    rep = judge(_results({"s": {"de00_p95": 5.001}}), th, base, known_sets=[], check_regression=False)
    assert rep.passed


def test_new_set_not_in_baseline(tmp_path):
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n", tmp_path)
    base = Baseline.from_results(_results({"other": {"de00_p95": 5.0}}))
    rep = judge(_results({"s": {"de00_p95": 6.0}}), th, base, known_sets=[])
    assert [r.verdict for r in rep.rows] == ["new"] and rep.passed


def test_vacuous_gates_are_errors(tmp_path):
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n[sets.s]\nde00_p95 = false\n", tmp_path)
    with pytest.raises(ConfigError, match="vacuous"):
        judge(_results({"s": {"de00_p95": 1.0}}), th, known_sets=[])
    th2 = _th("[defaults]\nde00_p95 = { worse_abs = 1.0 }\n", tmp_path, "regression_only.toml")
    with pytest.raises(ConfigError, match="vacuous"):  # regression-only bound and no baseline
        judge(_results({"s": {"de00_p95": 1.0}}), th2, known_sets=[])
    base = Baseline.from_results(_results({"s": {"de00_p95": 1.0}}))
    assert judge(_results({"s": {"de00_p95": 1.2}}), th2, base, known_sets=[]).passed
    with pytest.raises(StressSetError, match="zero images"):
        judge(_results({"s": {"de00_p95": 1.0}}, n_images=0), th, known_sets=["s"])
    with pytest.raises(UsageError):
        judge(Results({}, _proto(), {}), th, known_sets=[])


def test_nan_metric_is_usage_error_unless_output_nonfinite(tmp_path):
    th = _th("[defaults]\nsat_ratio_hc = { target = 1.0, band = 0.1 }\n", tmp_path)
    with pytest.raises(UsageError) as e:
        judge(_results({"grey": {"sat_ratio_hc": None}}), th, known_sets=[])
    assert "empty mask" in str(e.value) and "defaults.sat_ratio_hc" in str(e.value) and "colorfid.toml" in str(e.value)
    rep = judge(_results({"broken": {"sat_ratio_hc": None}}, nonfinite=12.0), th, known_sets=[])
    assert rep.rows[0].verdict == "fail_bound" and "non-finite" in rep.rows[0].note


def test_unknown_set_section(tmp_path):
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n[sets.saturated_paintt]\nde00_p95 = { max = 3 }\n", tmp_path)
    with pytest.raises(UnknownNameError) as e:
        judge(_results({"s": {"de00_p95": 1.0}}), th)
    assert "sets.saturated_paintt" in str(e.value) and "saturated_paint" in str(e.value)
    # A bundled set that is simply not run this time is fine.
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n[sets.photos]\nde00_p95 = { max = 3 }\n", tmp_path, "b.toml")
    assert judge(_results({"s": {"de00_p95": 1.0}}), th).passed


# --------------------------------------------------------------------------- baselines


def test_baseline_write_keeps_other_sets_and_is_json(tmp_path):
    path = tmp_path / "b" / "baseline.json"
    write_baseline(_results({"a": {"de00_p95": 1.0}, "b": {"de00_p95": 2.0}}), path)
    write_baseline(_results({"b": {"de00_p95": 3.0}, "c": {"de00_p95": 4.0}}), path)
    data = json.loads(path.read_text())
    assert data["schema"] == "colorfid.baseline"
    assert {k: v["metrics"]["de00_p95"]["mean"] for k, v in data["sets"].items()} == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert not list(path.parent.glob("*.tmp"))
    b = load_baseline(path)
    assert b.value("b", "de00_p95", "mean") == 3.0


BAD_BASELINES = [
    ("corrupt", "{not json", "not valid JSON"),
    ("wrong_schema", json.dumps({"schema": "colorfid.history", "schema_version": 1, "sets": {}}), "'schema'"),
    ("bad_results", json.dumps({"schema": "colorfid.results", "schema_version": 1, "sets": {}}), "'provenance'"),
    ("wrong_version", json.dumps({"schema": "colorfid.baseline", "schema_version": 9, "sets": {}}), "schema_version"),
    ("non_number", json.dumps({"schema": "colorfid.baseline", "schema_version": 1, "sets": {
        "a": {"protocol": {}, "metrics": {"de00_p95": {"mean": "abc"}}}}}), "sets.a.metrics.de00_p95.mean"),
    ("no_protocol", json.dumps({"schema": "colorfid.baseline", "schema_version": 1, "sets": {
        "a": {"metrics": {}}}}), "sets.a.protocol"),
]


@pytest.mark.parametrize("case,text,key", BAD_BASELINES, ids=[c[0] for c in BAD_BASELINES])
def test_bad_baselines(tmp_path, case, text, key):
    p = tmp_path / "baseline.json"
    p.write_text(text)
    with pytest.raises(BaselineError) as e:
        load_baseline(p)
    assert "baseline.json" in str(e.value) and key in str(e.value)


def test_results_file_is_a_baseline_everywhere(tmp_path, monkeypatch, capsys):
    """A results file (``colorfid eval --json``) serves as a baseline: its aggregates, as
    Baseline.from_results makes them; so `colorfid eval --baseline results.json` gates against it."""
    res = _results({"s": {"de00_p95": 5.0, "psnr": 30.0}})
    p = res.save(tmp_path / "r.json")
    b = load_baseline(p)
    assert b.path == p and b.value("s", "de00_p95", "tail95") == 5.0 and b.value("s", "psnr", "mean") == 30.0
    assert b.sets == Baseline.from_results(res).sets
    th = _th("[defaults]\nde00_p95 = { worse_abs = 0.5 }\n", tmp_path)
    assert judge(_results({"s": {"de00_p95": 5.4}}), th, b, known_sets=[]).passed
    assert not judge(_results({"s": {"de00_p95": 5.6}}), th, b, known_sets=[]).passed


def test_stat_vocabulary_labels_and_old_name(tmp_path):
    """One vocabulary: each aggregate statistic in words, and "p95" (its older name) read as
    tail95 from thresholds files, results (schema 1) and baselines."""
    from colorfid.results import STAT_LABELS, aggregate_label, stat_label

    assert AGGREGATE_STATS == ("mean", "median", "tail95", "worst")
    assert stat_label("p95") == stat_label("tail95") == "95 % of images at least this good"
    assert aggregate_label("sat_ratio_hc", "mean") == "sat. ratio, hc pixels (mean over images)"
    assert aggregate_label("hue_shift_hc_p95", "mean") == "hue shift °, 95th pct of hc pixels (mean over images)"
    assert set(STAT_LABELS) == set(AGGREGATE_STATS)
    th = _th('[defaults]\nsat_ratio_hc = { target = 1.0, band = 0.1, stat = "p95" }\n', tmp_path)
    assert th.bounds_for("s")["sat_ratio_hc"].stat == "tail95"
    with pytest.raises(ConfigError, match="p95 = tail95"):
        _th('[defaults]\nsat_ratio_hc = { target = 1.0, band = 0.1, stat = "q95" }\n', tmp_path)
    # a version-1 results file (aggregates keyed "p95") loads with tail95
    d = _results({"s": {"sat_ratio_hc": 0.8}}).to_dict()
    d["schema_version"] = 1
    for agg in d["sets"]["s"]["aggregate"].values():
        agg["p95"] = agg.pop("tail95")
    old = Results.from_dict(d)
    assert old.aggregate("s", "sat_ratio_hc", "tail95") == 0.8 == old.aggregate("s", "sat_ratio_hc", "p95")
    rep = judge(old, th, known_sets=[])
    assert rep.rows[0].stat == "tail95" and rep.rows[0].label == "sat. ratio, hc pixels (95 % of images at least this good)"
    text = rep.format(old)
    assert "95 % of images at least this good" in text and " p95 " not in text


def test_missing_baseline_error_unless_allowed(tmp_path):
    with pytest.raises(BaselineError, match="nope.json"):
        load_baseline(tmp_path / "nope.json")
    assert load_baseline(tmp_path / "nope.json", allow_missing=True) is None


def test_baseline_under_other_protocol_is_refused(tmp_path):
    th = _th("[defaults]\nde00_p95 = { max = 10.0 }\n", tmp_path)
    path = tmp_path / "baseline.json"
    write_baseline(_results({"s": {"de00_p95": 1.0}}, protocol=_proto(hc_saturation=0.6)), path)
    with pytest.raises(BaselineError) as e:
        judge(_results({"s": {"de00_p95": 1.0}}), th, load_baseline(path), known_sets=[])
    assert "baseline.json" in str(e.value) and "sets.s.protocol.hc_saturation" in str(e.value)
    assert _proto()["metrics_version"] == METRICS_VERSION


# --------------------------------------------------------------------------- bundled thresholds


def test_bundled_thresholds_parse_and_cover_every_bundled_set():
    from colorfid.stress import bundled_set_names

    th = load_thresholds(GOLDEN_TOML)
    for name in bundled_set_names():
        bounds = th.bounds_for(name)
        assert any(b.has_limits for b in bounds.values()), name
    text = GOLDEN_TOML.read_text()
    # documented line by line: every bound line carries a comment
    for line in text.splitlines():
        if "= {" in line:
            assert "#" in line, line


# --------------------------------------------------------------------------- the figure


LUMA = (0.299, 0.587, 0.114)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


class RestoreSaturatedPaint(nn.Module):
    """The exact inverse of each saturated_paint image's documented [degradation.images.<stem>]
    (noise and 8-bit rounding aside): undo the chroma roll-off and the saturation about BT.601
    luma, undo contrast about the pivot, decode sRGB, divide by exposure x white balance, encode.
    The image is recognised by its exact input bytes (the LQ file as 8-bit / 255, what
    colorfid.io reads). The sRGB transfer is written out here (IEC 61966-2-1) so the model
    shares no code with the gate it is tested by."""

    def __init__(self, stress_set) -> None:
        super().__init__()
        self.params = {}
        for p in stress_set.pairs:
            lq = np.asarray(Image.open(p.lq).convert("RGB"), dtype=np.float32) / 255.0
            key = hashlib.sha256(np.ascontiguousarray(lq.transpose(2, 0, 1)).tobytes()).hexdigest()
            self.params[key] = stress_set.degradation["images"][p.name]

    @staticmethod
    def _decode(v):
        return torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)

    @staticmethod
    def _encode(v):
        return torch.where(v <= 0.0031308, v * 12.92, 1.055 * v.clamp_min(1e-12) ** (1 / 2.4) - 0.055)

    def _invert(self, y: torch.Tensor, d: dict) -> torch.Tensor:
        gain = torch.tensor([float(d["exposure"]) * float(w) for w in d["wb"]], dtype=y.dtype).view(1, 3, 1, 1)
        Y = _luma(y)
        n = ((y - Y) ** 2).sum(1, keepdim=True).sqrt()
        y = Y + (y - Y) / (1 - float(d.get("chroma_rolloff", 0.0)) * n)
        y = Y + (y - Y) / float(d["saturation"])
        y = float(d["pivot"]) + (y - float(d["pivot"])) / float(d["contrast"])
        lin = self._decode(y.clamp(0, 1)) / gain
        return self._encode(lin.clamp(0, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        out = []
        for im in y:
            key = hashlib.sha256(im.detach().float().contiguous().numpy().tobytes()).hexdigest()
            out.append(self._invert(im[None], self.params[key])[0])
        return torch.stack(out)


class Desaturate(nn.Module):
    """A model that restores, then keeps only ``factor`` of the saturation: 'repainted walls'."""

    def __init__(self, base: nn.Module, factor: float = 0.8) -> None:
        super().__init__()
        self.base, self.factor = base, factor

    def forward(self, x):
        y = self.base(x)
        Y = _luma(y)
        return (Y + self.factor * (y - Y)).clamp(0, 1)


@pytest.fixture(scope="module")
def paint_results(tmp_path_factory):
    from colorfid.evaluation import evaluate
    from colorfid.stress import bundled_set

    s = bundled_set("saturated_paint")
    assert s.degradation.get("kind") == "per_image"
    cache = tmp_path_factory.mktemp("cache")
    restore = RestoreSaturatedPaint(s)
    models = {"identity": "identity", "desaturating": Desaturate(restore, 0.8), "restoring": restore}
    return {k: evaluate(m, [s], cache_dir=cache, progress=False, device="cpu") for k, m in models.items()}


@pytest.mark.slow
def test_figure_gate_fails_identity_and_desaturating_passes_restoring(paint_results):
    th = load_thresholds(GOLDEN_TOML)
    reports = {k: judge(r, th) for k, r in paint_results.items()}
    assert not reports["identity"].passed
    assert not reports["desaturating"].passed
    assert reports["restoring"].passed, reports["restoring"].format(paint_results["restoring"])
    fails = {r.metric for r in reports["desaturating"].failed_rows}
    assert "sat_ratio_hc" in fails  # it fails for the reason it was built to fail
    sat = paint_results["desaturating"].aggregate("saturated_paint", "sat_ratio_hc", "mean")
    assert 0.75 < sat < 0.9


@pytest.mark.slow
def test_figure_cli_exit_codes(paint_results, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no colorfid.toml here: the bundled one is used
    monkeypatch.setenv("COLORFID_CACHE", str(tmp_path / "cache"))
    code = cli.main(["eval", "--identity", "--sets", "saturated_paint", "--no-progress", "--json", "r.json",
                     "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAIL_BOUND" in out and "worst images" in out and "golden/colorfid.toml" in out
    assert "room_" in out  # the worst images are named
    r = Results.load(tmp_path / "r.json")
    assert r.set_names == ["saturated_paint"]


# --------------------------------------------------------------------------- the colourization figure


def _sepia_predictions(root: Path) -> Path:
    """``root/colorization/<stem>.png``: each GT's CIELAB lightness under one uniform warm tint
    (a* 6, b* 18: C* 19, h 71.6°), through colour-science (Lab -> XYZ -> linear sRGB by the
    exact inverse of its sRGB matrix -> clip -> encode), 8-bit."""
    colour = pytest.importorskip("colour")
    from colorfid.stress import bundled_set

    out = root / "colorization"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = np.linalg.inv(colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ)
        for p in bundled_set("colorization").pairs:
            gt = np.asarray(Image.open(p.gt).convert("RGB"), dtype=np.float64) / 255.0
            lab = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(gt))
            lab[..., 1], lab[..., 2] = 6.0, 18.0
            lin = np.clip(colour.Lab_to_XYZ(lab) @ m.T, 0.0, 1.0)
            _png(out / f"{p.name}.png", np.rint(colour.cctf_encoding(lin, function="sRGB") * 255))
    return root


def _gt_predictions(root: Path) -> Path:
    from colorfid.stress import bundled_set

    for p in bundled_set("colorization").pairs:
        (root / "colorization").mkdir(parents=True, exist_ok=True)
        (root / "colorization" / p.gt.name).write_bytes(p.gt.read_bytes())
    return root


@pytest.mark.slow
def test_colorization_figure_cli(tmp_path, monkeypatch, capsys):
    """The bundled thresholds fail the grey identity and a uniform-sepia prediction on the
    colourization set (exit 1) and pass the GT as predictions (exit 0); each fails for the
    reason it was built to fail."""
    monkeypatch.chdir(tmp_path)  # no colorfid.toml here: the bundled one
    monkeypatch.setenv("COLORFID_CACHE", str(tmp_path / "cache"))
    runs = {
        "identity": ["--identity", "--sets", "colorization", "--device", "cpu"],
        "sepia": ["--predictions", str(_sepia_predictions(tmp_path / "sepia"))],
        "gt": ["--predictions", str(_gt_predictions(tmp_path / "gt")), "--sets", "colorization"],
    }
    codes, results = {}, {}
    for name, args in runs.items():
        codes[name] = cli.main(["eval", *args, "--no-progress", "--json", f"{name}.json"])
        out = capsys.readouterr().out
        results[name] = Results.load(tmp_path / f"{name}.json")
        assert results[name].set_names == ["colorization"], out
    assert codes == {"identity": 1, "sepia": 1, "gt": 0}
    th = load_thresholds(GOLDEN_TOML)
    fails = {k: {r.metric for r in judge(r, th).failed_rows} for k, r in results.items()}
    assert {"chroma_ratio", "hue_spread_ratio", "hue_collapse", "grey_collapse"} <= fails["identity"]
    assert {"hue_spread_ratio", "hue_collapse"} <= fails["sepia"] and "chroma_ratio" not in fails["sepia"]
    agg = lambda k, m: results[k].aggregate("colorization", m, "mean")  # noqa: E731
    assert agg("identity", "chroma_ratio") < 0.01 and agg("identity", "hue_spread_ratio") < 0.01
    assert agg("sepia", "hue_spread_ratio") < 0.1 and agg("sepia", "hue_collapse") > 0.9
    assert agg("gt", "chroma_ratio") == 1.0 and agg("gt", "hue_spread_ratio") == 1.0 and agg("gt", "hue_collapse") == 0.0


@pytest.mark.slow
def test_shipped_colorization_checkpoint_verdict(tmp_path, monkeypatch, capsys):
    """golden/checkpoints/colorize_antiavg.pth is the file its README section records (sha256),
    and the README's command gives the verdict the README shows: exit 1, failing chroma_ratio
    (too little colour) while hue_spread_ratio and hue_collapse pass."""
    ckpt = REPO / "golden" / "checkpoints" / "colorize_antiavg.pth"
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert f"`{digest}`" in (REPO / "golden" / "checkpoints" / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLORFID_CACHE", str(tmp_path / "cache"))
    code = cli.main(["eval", "--checkpoint", str(ckpt), "--sets", "colorization", "--device", "cpu", "--no-progress",
                     "--json", "r.json"])
    out = capsys.readouterr().out
    assert code == 1, out
    failed = {r.metric for r in judge(Results.load(tmp_path / "r.json"), load_thresholds(GOLDEN_TOML)).failed_rows}
    assert "chroma_ratio" in failed and not {"hue_spread_ratio", "hue_collapse", "grey_collapse"} & failed, failed


def test_colorization_set_runs_only_when_named(tmp_path):
    """Not in the bundled stress_sets, and not in "every bundled set" of a config that lists none;
    named, it runs under that config's [defaults] (and the bundled config's own section)."""
    th = load_thresholds(GOLDEN_TOML)
    assert "colorization" not in th.stress_sets and "colorization" in th.sets
    assert "colorization" not in [s.name for s in plan_gate("identity", config=GOLDEN_TOML).sets]
    own = tmp_path / "colorfid.toml"
    own.write_text("[defaults]\nchroma_ratio = { target = 1.0, band = 0.5 }\n")
    assert "colorization" not in [s.name for s in plan_gate("identity", config=own).sets]
    plan = plan_gate("identity", config=own, sets=["colorization"])
    assert [s.name for s in plan.sets] == ["colorization"] and set(plan.thresholds.bounds_for("colorization")) == {"chroma_ratio"}


# --------------------------------------------------------------------------- CLI on tiny sets


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path)


def _tiny_gt(seed: int, h=24, w=24, grey=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.empty((h, w, 3), np.float64)
    if grey:
        a[:] = rng.uniform(80, 170, (h, w, 1))
    else:
        a[:] = (30, 70, 200)  # saturated blue wall
        a[:, w // 2:] = (200, 40, 40)  # saturated red wall
        a *= rng.uniform(0.85, 1.0, (h, w, 1))
    return np.clip(a, 0, 255)


def _desat(a: np.ndarray, f: float) -> np.ndarray:
    y = a @ np.array(LUMA)
    return y[..., None] + f * (a - y[..., None])


def make_set(root: Path, name: str, *, factor=1.0, grey=False, n=2, side="pred") -> Path:
    d = root / name
    for i in range(n):
        gt = _tiny_gt(i, grey=grey)
        _png(d / "gt" / f"im{i}.png", gt)
        _png(d / side / f"im{i}.png", np.round(_desat(gt, factor)))
    return d


TINY_TOML = """
[defaults]
de00_p95 = { max = 5.0 }                      # tiny test bound
sat_ratio_hc = { target = 1.0, band = 0.1 }   # tiny test bound
"""


def _ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    make_set(ws / "sets", "good")
    (ws / "colorfid.toml").write_text(TINY_TOML)
    return ws


def test_cli_pass_fail_and_baseline(tmp_path, monkeypatch, capsys):
    ws = _ws(tmp_path)
    make_set(ws / "sets", "washed", factor=0.6)
    monkeypatch.chdir(ws)
    assert cli.main(["eval", "--predictions", "sets", "--sets", "good", "--no-progress"]) == 0
    assert cli.main(["eval", "--predictions", "sets", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "washed" in out and "FAIL_BOUND" in out
    assert cli.main(["eval", "--predictions", "sets", "--sets", "good", "--baseline", "b.json",
                     "--update-baseline", "--no-progress"]) == 0
    assert set(json.loads((ws / "b.json").read_text())["sets"]) == {"good"}
    assert cli.main(["eval", "--predictions", "sets", "--sets", "good", "--baseline", "b.json", "--no-progress",
                     "--report", "rep", "--json", "r.json"]) == 0
    assert (ws / "rep" / "index.html").is_file()
    assert Results.load(ws / "r.json").set_names == ["good"]


def _nafnet_checkpoint(path: Path, shift: float = 0.0) -> Path:
    """A NAFNet whose output is its input (ending conv zeroed: the global residual) plus ``shift``
    on the red channel -- two checkpoints of one architecture, one worse than the other."""
    from colorfid.models.checkpoint import save_model
    from colorfid.models.nafnet import NAFNet

    torch.manual_seed(0)
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    with torch.no_grad():
        net.ending.weight.zero_()
        net.ending.bias.copy_(torch.tensor([shift, 0.0, 0.0]))
    return save_model(net, path)


def test_same_option_same_meaning_everywhere(tmp_path, monkeypatch, capsys):
    """--baseline takes a results file in eval as in report; a set name the thresholds file
    declares (its stress_sets folder) resolves in eval, report and plan_gate; `colorfid report
    --checkpoint a b --first-as-baseline --gate` judges b against a, prints the verdict table and
    exits like eval."""
    ws = tmp_path / "ws"
    make_set(ws / "data", "my_photos", side="lq")
    (ws / "colorfid.toml").write_text(
        'stress_sets = ["./data/my_photos"]\n[defaults]\nde00_p95 = { max = 50.0 }\n'
        "[sets.my_photos]\nsat_ratio_hc = { target = 1.0, band = 0.5 }\n")
    a, b = _nafnet_checkpoint(ws / "a.pth"), _nafnet_checkpoint(ws / "b.pth", shift=0.1)
    monkeypatch.chdir(ws)
    # a declared name resolves (it used to be refused as an unknown bundled set)
    assert cli.main(["eval", "--checkpoint", "a.pth", "--sets", "my_photos", "--device", "cpu", "--json", "ra.json",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sets my_photos" in out and "sat_ratio_hc" in out  # the [sets.my_photos] bound applied
    assert plan_gate("identity", sets=["my_photos"]).sets[0].root == ws / "data" / "my_photos"
    # a results file is a baseline: the same checkpoint passes against it, a worse one regresses
    assert cli.main(["eval", "--checkpoint", "a.pth", "--sets", "my_photos", "--device", "cpu", "--baseline", "ra.json",
                     "--no-progress"]) == 0
    assert cli.main(["eval", "--checkpoint", "b.pth", "--sets", "my_photos", "--device", "cpu", "--baseline", "ra.json",
                     "--no-progress"]) == 1
    assert "FAIL_REGRESSION" in capsys.readouterr().out
    # ... but --update-baseline never overwrites it
    before = (ws / "ra.json").read_text()
    assert cli.main(["eval", "--checkpoint", "b.pth", "--sets", "my_photos", "--device", "cpu", "--baseline", "ra.json",
                     "--update-baseline", "--no-progress"]) == 2
    assert "results file" in capsys.readouterr().err and (ws / "ra.json").read_text() == before
    # report: a as the baseline, --gate prints eval's table and exits 1; a -> a passes
    rc = cli.main(["report", "--checkpoint", "a.pth", "b.pth", "--sets", "my_photos", "--device", "cpu",
                   "--first-as-baseline", "--gate", "--out", "rep"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL_REGRESSION" in out and "colorfid gate: FAILED" in out
    gate = json.loads((ws / "rep" / "gate.json").read_text())
    assert gate["rows"][0]["baseline"] is not None and (ws / "rep" / "index.html").is_file()
    assert cli.main(["report", "--checkpoint", "a.pth", "a.pth", "--sets", "my_photos", "--device", "cpu",
                     "--first-as-baseline", "--gate", "--out", "rep2"]) == 0
    assert "colorfid gate: PASSED" in capsys.readouterr().out
    # the report's --baseline takes the same results file; without --gate the exit code stays 0
    assert cli.main(["report", "--checkpoint", "b.pth", "--sets", "my_photos", "--device", "cpu", "--baseline",
                     "ra.json", "--out", "rep3"]) == 0
    assert "gate: FAIL" in capsys.readouterr().out
    assert cli.main(["report", "ra.json", "--first-as-baseline", "--out", "rep4"]) == 2


def test_plan_rejects_model_on_prediction_only_set(tmp_path):
    ws = _ws(tmp_path)
    with pytest.raises(StressSetError, match="lq/"):
        plan_gate("identity", sets=[str(ws / "sets" / "good")], config=ws / "colorfid.toml")


def test_parse_thresholds_from_a_mapping():
    th = parse_thresholds({"defaults": {"psnr": {"min": 30}}}, source="inline", prefix="tool.colorfid.")
    assert th.bounds_for("x")["psnr"].text() == "≥ 30"
    with pytest.raises(ConfigError, match="inline: key 'tool.colorfid.defaults.psnr.mni'"):
        parse_thresholds({"defaults": {"psnr": {"mni": 30}}}, source="inline", prefix="tool.colorfid.")
