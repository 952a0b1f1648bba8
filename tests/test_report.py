"""Tests of colorfid.report: the self-contained HTML report, its maps, matrix, trends, history.

Fixtures are small generated images (tmp_path). Expected values come from construction (which
image was desaturated most), from published colour-map anchors (matplotlib's inferno, ColorBrewer
BrBG / RdBu) and from colour-science (CIEDE2000 of flat colour pairs) — never from the report.
``make_results`` / ``make_report`` are also used by tests/test_report_browser.py and
scripts/screenshot_report.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import colorfid
from colorfid import metrics, report
from colorfid._format import sig
from colorfid.report.maps import compute_maps
from colorfid.report.numbers import bound_lines
from colorfid.errors import ConfigError, UnknownNameError, UsageError

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Generated stress-set-like data and Results dicts (schema v1)
# ---------------------------------------------------------------------------------------------

# Strongly coloured wall paints (sRGB, encoded) on a neutral room: the failure the report shows.
_PAINTS = [(0.10, 0.35, 0.80), (0.05, 0.60, 0.35), (0.00, 0.55, 0.60), (0.85, 0.25, 0.15)]


def scene(h: int, w: int, seed: int, *, neutral: bool = False, texture: float = 0.03) -> np.ndarray:
    """A photo-like GT (H, W, 3) in [0, 1]: lit neutral room, coloured panels, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.55 + 0.25 * np.sin(2.5 * xx + 1.3 * yy + seed) * np.cos(1.7 * yy - seed)
    img = np.repeat(base[..., None], 3, axis=2) * np.array([1.0, 0.98, 0.95])
    if not neutral:
        for k in range(3):
            c = np.array(_PAINTS[(seed + k) % len(_PAINTS)])
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            ph, pw = rng.integers(h // 4, h // 2 + 1), rng.integers(w // 4, w // 2 + 1)
            shade = 0.75 + 0.25 * base[y0 : y0 + ph, x0 : x0 + pw, None]
            img[y0 : y0 + ph, x0 : x0 + pw] = c * shade
    # smooth low-frequency texture plus mild sensor-like noise: compresses like a photo
    small = rng.normal(0.0, 1.0, (max(2, h // 8), max(2, w // 8), 3))
    tex = np.asarray(Image.fromarray(((small * 0.15 + 0.5).clip(0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)) / 255.0 - 0.5
    img = img + texture * tex + rng.normal(0.0, texture / 3, img.shape)
    return img.clip(0.0, 1.0)


def desaturate(img: np.ndarray, f: float) -> np.ndarray:
    """Mix toward BT.601 luma by f (0 = unchanged, 1 = grey): the 'repainted walls' failure."""
    luma = img @ np.array([0.299, 0.587, 0.114])
    return (img + f * (luma[..., None] - img)).clip(0.0, 1.0)


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def _t(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def _plain(v: float, name: str) -> float | None:
    if math.isinf(v) and v > 0 and name == "psnr":
        return 100.0
    return float(v) if math.isfinite(v) else None


def _aggregate(name: str, vals: list[float | None]) -> dict[str, Any]:
    v = np.array([x for x in vals if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "median": None, "tail95": None, "worst": None, "n": 0}
    spec = metrics.METRICS[name]
    if spec.direction == "higher":
        worst = float(v.min())
    elif spec.direction == "target":
        worst = float(v[np.argmax(np.abs(v - spec.target))])
    else:
        worst = float(v.max())
    return {"mean": float(v.mean()), "median": float(np.median(v)), "tail95": float(np.percentile(v, 95)), "worst": worst, "n": int(v.size)}


def _fake_metrics(rng: np.random.Generator, strength: float) -> dict[str, float]:
    base = {
        "de00_mean": 2.0, "de00_median": 1.5, "de00_p95": 6.0, "de00_p99": 9.0, "de00_max": 20.0,
        "de00_hc_p95": 9.0, "sat_ratio": 0.95, "sat_ratio_hc": 0.85, "chroma_ratio_hc": 0.86,
        "hue_shift_hc_mean": 3.0, "hue_shift_hc_p95": 9.0, "hue_drift_hc": 1.0, "brightness_ratio": 1.0,
        "psnr": 30.0, "ssim": 0.9, "out_of_range_frac": 0.0, "nonfinite_count": 0.0,
        "grey_collapse": 0.01, "mean_saturation": 0.3, "hc_fraction": 0.2,
    }
    return {k: float(v * (1 + strength * rng.uniform(0.5, 1.5))) for k, v in base.items()}


def make_results(
    root: Path,
    *,
    label: str = "net_g_1000",
    sets: dict[str, int] | None = None,
    size: tuple[int, int] = (40, 56),
    strength: float = 0.15,
    seed: int = 0,
    compute: bool = True,
    neutral_sets: tuple[str, ...] = ("neutral",),
    one_scene: bool = False,
    write_images: bool = True,
) -> dict[str, Any]:
    """Generate GT/LQ/output PNGs under ``root`` and return a schema-v1 Results dict.

    Image ``i`` of a coloured set is the GT desaturated by ``strength * (i + 1)``: the last image
    of each set is the worst by construction (strictly so with ``one_scene=True``: every image of
    a set then shares one GT scene). ``compute=False`` fills in cheap made-up metrics
    (for size tests on large images, where the metric values do not matter); ``write_images=False``
    (with ``compute=False``) records the paths without writing files, for checkpoints that
    only feed the trends.
    """
    sets = {"paint": 3, "neutral": 2} if sets is None else sets
    h, w = size
    rng = np.random.default_rng(seed)
    protocol = {**metrics.MetricProtocol().as_dict(), "color_pipeline": "sRGB -> Lab (test)", "metrics_version": 1}
    out_sets: dict[str, Any] = {}
    for s_i, (sname, n) in enumerate(sets.items()):
        images = []
        for i in range(n):
            stem = f"{sname}_{i:02d}"
            neutral = sname in neutral_sets
            gt = scene(h, w, seed=1000 * s_i + (0 if one_scene else i), neutral=neutral)
            out = desaturate(gt, strength * (i + 1)) if not neutral else (gt * (1.0 - 0.02 * (i + 1))).clip(0, 1)
            lq = (desaturate(gt, 0.5) * 0.8).clip(0, 1)
            gt_p, lq_p = root / "sets" / sname / "gt" / f"{stem}.png", root / "sets" / sname / "lq" / f"{stem}.png"
            out_p = root / "cache" / label / sname / f"{stem}.png"
            if write_images:
                for path, arr in ((gt_p, gt), (lq_p, lq)):
                    if not path.exists():  # the same scene for every checkpoint
                        write_png(path, arr)
                write_png(out_p, out)
            if compute:
                rd = lambda p: _t(np.asarray(Image.open(p), dtype=np.float64) / 255.0)  # noqa: E731
                m = {k: _plain(v, k) for k, v in metrics.image_metrics(rd(out_p), rd(gt_p)).items()}
            else:
                m = _fake_metrics(rng, strength * (i + 1))
            images.append(
                {"name": stem, "gt": str(gt_p), "lq": str(lq_p), "output": str(out_p), "height": h, "width": w, "metrics": m}
            )
        names = list(images[0]["metrics"]) if images else []
        out_sets[sname] = {
            "path": str(root / "sets" / sname),
            "kind": "lq",
            "description": f"generated {sname} scenes",
            "images": images,
            "aggregate": {k: _aggregate(k, [im["metrics"][k] for im in images]) for k in names},
            "worst": [],
            "protocol": protocol,
        }
    return {
        "schema": "colorfid.results",
        "schema_version": 1,
        "created": f"2025-01-{1 + seed % 28:02d}T12:00:00Z",
        "provenance": {
            "model": "NAFNet",
            "checkpoint": f"/ckpt/{label}.pth",
            "checkpoint_sha256": hashlib.sha256(label.encode()).hexdigest(),
            "colorfid_version": colorfid_version(),
            "torch_version": torch.__version__,
            "device": "cpu",
            "dtype": "float32",
            "tile": None,
            "overlap": None,
        },
        "protocol": protocol,
        "sets": out_sets,
    }


def colorfid_version() -> str:
    from colorfid._version import __version__

    return __version__


def gate_rows(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GateReport.to_dict()-shaped verdict: de00_p95 <= 3 (fails on paint), psnr >= 20, sat_ratio_hc 1 ± 0.1."""
    checks = [("de00_p95", "mean", "≤ 3", lambda v: v <= 3.0), ("psnr", "mean", "≥ 20", lambda v: v >= 20.0),
              ("sat_ratio_hc", "mean", "1.0 ± 0.1", lambda v: abs(v - 1.0) <= 0.1)]
    rows = []
    for sname, s in results["sets"].items():
        for mname, stat, bound, ok in checks:
            v = s["aggregate"][mname][stat]
            b = baseline["sets"][sname]["aggregate"][mname][stat] if baseline else None
            verdict = "pass" if v is None or ok(v) else "fail_bound"
            rows.append({"set": sname, "metric": mname, "stat": stat, "value": v, "bound": bound, "baseline": b,
                         "delta": None if (v is None or b is None) else v - b, "verdict": verdict})
    return {"passed": all(r["verdict"] == "pass" for r in rows), "rows": rows}


#: Thresholds of the demo report (colorfid.gate syntax): ΔE and saturation fail on the paint set.
DEMO_THRESHOLDS = {
    "defaults": {
        "de00_p95": {"max": 3.0, "worse_abs": 0.2},
        "psnr": {"min": 20.0, "worse_abs": 0.5},
        "sat_ratio_hc": {"target": 1.0, "band": 0.1, "worse_abs": 0.02},
    },
    "sets": {"neutral": {"sat_ratio_hc": False}},
}


def make_report(tmp: Path, *, n_checkpoints: int = 3, baseline: bool = True, **kw: Any) -> tuple[Path, list[dict], dict]:
    """A report of several checkpoints (improving), a baseline and a colorfid.gate verdict.

    Returns (index.html, the results dicts oldest first, the gate report's ``to_dict()``).
    """
    from colorfid import gate as _gate

    runs = [make_results(tmp, label=f"net_g_{(i + 1) * 2000}", strength=0.25 - 0.05 * i, seed=i, **kw) for i in range(n_checkpoints)]
    base = make_results(tmp, label="baseline", strength=0.12, seed=7, **kw) if baseline else None
    th = _gate.parse_thresholds(DEMO_THRESHOLDS, source="demo thresholds")
    verdict = _gate.judge(runs[-1], th, _gate.Baseline.from_results(base) if base else None)
    index = report.write_report(runs, tmp / "report", gate_report=verdict, baseline=base)
    return index, runs, verdict.to_dict()


# ---------------------------------------------------------------------------------------------
# HTML helpers
# ---------------------------------------------------------------------------------------------


def parse_strict(html: str) -> Any:
    """Parse with html5lib's strict parser: any parse error raises."""
    html5lib = pytest.importorskip("html5lib", reason="html5lib (test extra) is needed for the HTML validity check")
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)


def imgs(doc: Any) -> list[Any]:
    return doc.findall(".//img")


def decode_img(src: str) -> np.ndarray:
    m = re.match(r"data:image/(png|jpeg);base64,(.*)$", src, re.S)
    assert m, src[:60]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(2)))).convert("RGB"))


def find_img(doc: Any, alt_start: str) -> np.ndarray:
    for im in imgs(doc):
        if im.get("alt", "").startswith(alt_start):
            return decode_img(im.get("src"))
    raise AssertionError(f"no <img> whose alt starts with {alt_start!r}; alts: {[i.get('alt') for i in imgs(doc)]}")


def hexrgb(h: str) -> np.ndarray:
    return np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# The report file
# ---------------------------------------------------------------------------------------------


def test_report_is_valid_self_contained_html(tmp_path: Path) -> None:
    index, runs, gate = make_report(tmp_path, n_checkpoints=2)
    html = index.read_text(encoding="utf-8")
    doc = parse_strict(html)
    assert html.startswith("<!DOCTYPE html>")
    assert doc.get("lang") == "en"
    # nothing fetched: every image is inline, no external URL, no <link>/<script src>
    srcs = [im.get("src") for im in imgs(doc)]
    assert srcs and all(s.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for s in srcs)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert not re.search(r"https?://", html)
    assert all(s.get("src") is None for s in doc.findall(".//script"))
    assert [l.get("href") for l in doc.findall(".//link")] == ["data:,"]  # the empty favicon only
    assert "default-src 'none'" in html  # CSP: the browser itself refuses any fetch
    # accessible: every image has a non-empty alt; ids are unique
    assert all(im.get("alt") for im in imgs(doc))
    ids = [e.get("id") for e in doc.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    # header: checkpoints and their sha256, baseline, verdict, link to the results JSON
    for r in runs:
        assert r["provenance"]["checkpoint_sha256"] in html
    assert hashlib.sha256(b"baseline").hexdigest() in html
    assert "✗ FAIL" in html
    links = [a.get("href") for a in doc.findall(".//a")]
    assert "results.json" in links and "gate.json" in links
    saved = json.loads((index.parent / "results.json").read_text())
    assert saved["provenance"]["checkpoint_sha256"] == runs[-1]["provenance"]["checkpoint_sha256"]
    assert json.loads((index.parent / "gate.json").read_text())["rows"] == gate["rows"]
    # images are thumbnails
    assert all(max(decode_img(s).shape[:2]) <= report.OUTPUT_LONG_EDGE for s in srcs)


def test_core_view_without_javascript(tmp_path: Path) -> None:
    """The slider is built by script; without it the output and GT are plain images side by side."""
    res = make_results(tmp_path, sets={"paint": 2})
    doc = parse_strict(report.write_report(res, tmp_path / "r", worst_k=2).read_text())
    swipes = [f for f in doc.findall(".//figure") if "swipe" in (f.get("class") or "")]
    assert len(swipes) == 2 and all(f.get("hidden") is not None for f in swipes)
    for f in swipes:  # the two images it overlays exist as ordinary <img> in the strip
        assert doc.find(f".//img[@id='{f.get('data-a')}']") is not None
        assert doc.find(f".//img[@id='{f.get('data-b')}']") is not None
        assert f.findall(".//img") == []  # no duplicated image data in the file
    alts = [im.get("alt") for im in imgs(doc)]
    for what in ("LQ (input) of paint_01", "output of paint_01", "GT (target) of paint_01"):
        assert what in alts


def test_worst_images_follow_metric_direction(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"paint": 4}, one_scene=True)
    # by construction image 3 is the most desaturated: worst by ΔE p95 (lower better), by PSNR
    # (higher better) and by sat_ratio_hc (target 1)
    for metric in ("de00_p95", "psnr", "sat_ratio_hc"):
        html = report.write_report(res, tmp_path / metric, worst_k=2, metric=metric).read_text()
        heads = re.findall(r'<h3 id="set-paint-\d+-h"><span class="rank">#(\d)</span> (\S+) ', html)
        assert heads == [("1", "paint_03"), ("2", "paint_02")], (metric, heads)
    html = report.write_report(res, tmp_path / "k0", worst_k=0).read_text()
    assert 'class="card"' not in html and "paint_03" in html  # table still lists every image


def _flat_pair_results(tmp: Path, pairs: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]) -> dict[str, Any]:
    """Results of one set whose images are flat colours: name -> (output rgb, GT rgb)."""
    res = make_results(tmp, sets={"flat": len(pairs)}, size=(24, 24))
    for im, (name, (out_rgb, gt_rgb)) in zip(res["sets"]["flat"]["images"], pairs.items()):
        im["name"] = name
        write_png(Path(im["output"]), np.broadcast_to(np.array(out_rgb), (24, 24, 3)))
        write_png(Path(im["gt"]), np.broadcast_to(np.array(gt_rgb), (24, 24, 3)))
    return res


def test_delta_e_map_uses_a_fixed_scale(tmp_path: Path) -> None:
    colour = pytest.importorskip("colour")
    # pairs of 8-bit colours: identical, ΔE00 > 20 (red vs green), and ~8 ΔE00
    grey = (128 / 255, 128 / 255, 128 / 255)
    pairs = {"same": (grey, grey), "far": ((200 / 255, 30 / 255, 30 / 255), (30 / 255, 160 / 255, 40 / 255))}
    # find an 8-bit blue-ish colour whose CIEDE2000 from the grey is close to 8 (colour-science oracle)
    def de00(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        to_lab = lambda c: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.array(c)))  # noqa: E731
        return float(colour.delta_E(to_lab(a), to_lab(b), method="CIE 2000"))

    cands = [(128 / 255, 128 / 255, (128 + k) / 255) for k in range(1, 100)]
    mid = min(cands, key=lambda c: abs(de00(c, grey) - 8.0))
    d_mid = de00(mid, grey)
    assert abs(d_mid - 8.0) < 0.3
    pairs["mid"] = (mid, grey)
    assert de00(*pairs["far"]) > 20
    res = _flat_pair_results(tmp_path, pairs)
    doc = parse_strict(report.write_report(res, tmp_path / "r", worst_k=3).read_text())
    # published inferno anchors at 0, 0.2, ..., 1.0 of the 0..20 ΔE00 scale
    anchors = ["#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"]
    c_same = find_img(doc, "ΔE2000 map of same")[12, 12]
    c_far = find_img(doc, "ΔE2000 map of far")[12, 12]
    c_mid = find_img(doc, "ΔE2000 map of mid")[12, 12]
    assert np.abs(c_same - hexrgb(anchors[0])).max() <= 6
    assert np.abs(c_far - hexrgb(anchors[-1])).max() <= 6  # saturates at the top of the scale
    u = d_mid / 20.0 * 5  # position between anchors
    i = int(u)
    expect = hexrgb(anchors[i]) + (u - i) * (hexrgb(anchors[i + 1]) - hexrgb(anchors[i]))
    assert np.abs(c_mid - expect).max() <= 8, (c_mid, expect)


def test_hue_and_saturation_maps(tmp_path: Path) -> None:
    colour = pytest.importorskip("colour")
    gt_lab = np.array([55.0, 30.0, -45.0])  # a saturated blue-violet, C*ab ~ 54

    def lab_rgb(lab: np.ndarray) -> tuple[float, ...]:
        return tuple(np.clip(colour.XYZ_to_sRGB(colour.Lab_to_XYZ(lab)), 0, 1))

    lch = colour.Lab_to_LCHab(gt_lab)
    rot = lambda deg: lab_rgb(colour.LCHab_to_Lab(lch + np.array([0.0, 0.0, deg])))  # noqa: E731
    gt = lab_rgb(gt_lab)
    import colorsys

    hsv = colorsys.rgb_to_hsv(*gt)
    half_sat = colorsys.hsv_to_rgb(hsv[0], hsv[1] * 0.5, hsv[2])  # S_out / S_GT = 0.5
    grey = (0.5, 0.5, 0.5)
    res = _flat_pair_results(
        tmp_path, {"hue_plus": (rot(+25.0), gt), "hue_minus": (rot(-25.0), gt), "washed": (half_sat, gt), "neutral_gt": ((0.55, 0.5, 0.45), grey)}
    )
    doc = parse_strict(report.write_report(res, tmp_path / "r", worst_k=4).read_text())
    plus = find_img(doc, "hue shift (chromatic mask) of hue_plus")[12, 12]
    minus = find_img(doc, "hue shift (chromatic mask) of hue_minus")[12, 12]
    # ColorBrewer RdBu: positive shifts red (R > B), negative blue (B > R)
    assert plus[0] > plus[2] + 60 and minus[2] > minus[0] + 60
    # a neutral GT has no hue: outside the chromatic mask -> grey context (R = G = B)
    ng = find_img(doc, "hue shift (chromatic mask) of neutral_gt")[12, 12].astype(int)
    assert abs(ng[0] - ng[1]) <= 3 and abs(ng[1] - ng[2]) <= 3
    # saturation ratio 0.5 is the bottom of the x0.5..x2 scale: BrBG's first anchor #8c510a
    washed = find_img(doc, "saturation ratio of washed")[12, 12]
    assert np.abs(washed - hexrgb("#8c510a")).max() <= 14, washed
    same_sat = find_img(doc, "saturation ratio of hue_plus")[12, 12]  # hue rotated, S about equal
    assert np.abs(same_sat.astype(float) - hexrgb("#f5f5f5")).max() <= 60


def test_matrix_deltas_coloured_by_direction_and_worst_first(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"neutral": 1, "paint": 2})
    rows = [
        # lower is better: went up -> worse
        {"set": "paint", "metric": "de00_p95", "stat": "mean", "value": 7.5, "bound": "<= 6", "baseline": 5.0, "delta": 2.5, "verdict": "fail_bound"},
        # target 1: from 0.95 to 0.80 -> worse (farther from 1)
        {"set": "paint", "metric": "sat_ratio_hc", "stat": "mean", "value": 0.80, "bound": "1 ± 0.25", "baseline": 0.95, "delta": -0.15, "verdict": "pass"},
        # higher is better: went up -> better
        {"set": "neutral", "metric": "psnr", "stat": "mean", "value": 33.0, "bound": ">= 25", "baseline": 31.0, "delta": 2.0, "verdict": "improved"},
        # target 1: from 1.2 to 1.05 -> better although the value fell
        {"set": "neutral", "metric": "sat_ratio_hc", "stat": "mean", "value": 1.05, "bound": "1 ± 0.25", "baseline": 1.2, "delta": -0.15, "verdict": "pass"},
    ]
    html = report.write_report(res, tmp_path / "r", gate_report={"passed": False, "rows": rows}).read_text()
    doc = parse_strict(html)
    table = doc.find(".//table[@class='matrix']")
    body_rows = table.findall("./tbody/tr")
    assert [r.find("./th/a").text for r in body_rows] == ["paint", "neutral"]  # failing set first
    heads = [th.text for th in table.findall("./thead/tr/th")][1:]
    assert heads == ["de00_p95", "sat_ratio_hc", "psnr"]

    def cell(r: int, c: int) -> Any:
        return body_rows[r].findall("./td")[c]

    def delta_class(td: Any) -> str:
        spans = [s for s in td.iter("span") if (s.get("class") or "").startswith("d-")]
        return spans[0].get("class")

    assert delta_class(cell(0, 0)) == "d-worse" and "+2.5" in "".join(cell(0, 0).itertext())
    assert delta_class(cell(0, 1)) == "d-worse" and "Δ -0.15" in "".join(cell(0, 1).itertext())  # the gate table's sig()
    assert delta_class(cell(1, 2)) == "d-better"
    assert delta_class(cell(1, 1)) == "d-better"
    assert "fail: bound" in "".join(cell(0, 0).itertext()) and cell(0, 0).get("class") == "v-fail_bound"
    assert "not checked" in "".join(cell(1, 0).itertext())
    assert "✗ FAIL" in html


def test_matrix_without_gate_uses_baseline_means(tmp_path: Path) -> None:
    res = make_results(tmp_path, label="net_g_4000", strength=0.3)
    base = make_results(tmp_path, label="base", strength=0.1)
    html = report.write_report(res, tmp_path / "r", baseline=base).read_text()
    doc = parse_strict(html)
    assert "not gated" in html
    heads = [th.text for th in doc.findall(".//table[@class='matrix']/thead/tr/th")][1:]
    assert heads[0] == "de00_p95" and "psnr" in heads
    paint = next(r for r in doc.findall(".//table[@class='matrix']/tbody/tr") if r.find("./th/a").text == "paint")
    td = paint.findall("./td")[0]
    want = res["sets"]["paint"]["aggregate"]["de00_p95"]["mean"] - base["sets"]["paint"]["aggregate"]["de00_p95"]["mean"]
    assert want > 0
    assert f"+{want:.3f}" in "".join(td.itertext())
    assert any(s.get("class") == "d-worse" for s in td.iter("span"))
    # the baseline's cached outputs appear next to the output
    assert "baseline output of paint_02" in [im.get("alt") for im in imgs(doc)]


def test_values_only_gate_baseline(tmp_path: Path) -> None:
    from colorfid import gate

    res = make_results(tmp_path, label="net_g_4000", strength=0.3)
    base = make_results(tmp_path, label="base", strength=0.1)
    b = gate.Baseline.from_results(base)
    path = b.save(tmp_path / "baseline.json")
    want = res["sets"]["paint"]["aggregate"]["de00_p95"]["mean"] - base["sets"]["paint"]["aggregate"]["de00_p95"]["mean"]
    for given in (b, path, b.to_dict()):
        html = report.write_report(res, tmp_path / "r", baseline=given).read_text()
        parse_strict(html)
        assert f"+{want:.3f}" in html
        assert "baseline output" not in html and "no baseline output cached" not in html  # no images: no column


def test_real_gate_report(tmp_path: Path) -> None:
    from colorfid import gate
    from colorfid.evaluation import Results

    res = Results.from_dict(make_results(tmp_path, strength=0.3))
    th = gate.parse_thresholds({"defaults": {"de00_p95": {"max": 1.0}, "psnr": {"min": 20.0}}}, source="t.toml")
    judged = gate.judge(res, th)
    assert not judged.passed
    html = report.write_report(res, tmp_path / "r", gate_report=judged).read_text()
    parse_strict(html)
    assert "✗ FAIL" in html and "fail: bound" in html and "bound ≤ 1" in html
    d = judged.to_dict()  # the same verdicts from the dict form
    html2 = report.write_report(res, tmp_path / "r2", gate_report=d).read_text()
    assert html2.count("fail: bound") == html.count("fail: bound") >= 2


def test_results_object_and_path_inputs(tmp_path: Path) -> None:
    from colorfid.evaluation import Results

    d = make_results(tmp_path)
    obj = Results.from_dict(d)
    path = obj.save(tmp_path / "res.json")
    a = report.write_report(obj, tmp_path / "a").read_text()
    b = report.write_report(path, tmp_path / "b").read_text()
    strip = lambda s: re.sub(r"report generated [^)]*", "", s)  # noqa: E731
    assert strip(a) == strip(b)


def test_missing_output_and_prediction_sets(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"paint": 2})
    res["sets"]["paint"]["images"][1]["output"] = None  # not cached
    res["sets"]["paint"]["images"][0]["lq"] = None
    res["sets"]["paint"]["kind"] = "pred"
    html = report.write_report(res, tmp_path / "r", worst_k=2).read_text()
    parse_strict(html)
    assert "output not cached" in html and "maps need both the cached output and the GT" in html
    assert "no LQ (prediction set)" in html


def test_health_flags(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"paint": 2})
    m = res["sets"]["paint"]["images"][1]["metrics"]
    m.update(nonfinite_count=3.0, grey_collapse=0.7, out_of_range_frac=0.0125)
    res["sets"]["paint"]["images"][0]["metrics"]["grey_collapse"] = 0.01
    html = report.write_report(res, tmp_path / "r").read_text()
    assert "3 non-finite values" in html
    assert "grey collapse: 70% of coloured GT pixels rendered grey" in html
    assert "1.25% of values outside [0, 1]" in html
    assert "no health flags" in html  # the clean image says so


def test_full_size_side_files(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"paint": 1}, size=(20, 800))
    index = report.write_report(res, tmp_path / "r", full_size=True)
    doc = parse_strict(index.read_text())
    hrefs = [a.get("href") for a in doc.findall(".//a") if (a.get("href") or "").startswith("full/")]
    assert len(hrefs) == 6  # LQ, output, GT and the three maps (no baseline given: no column)
    for h in hrefs:
        assert (index.parent / h).is_file()
    de_full = [h for h in hrefs if h.endswith("_de00.png")][0]
    assert Image.open(index.parent / de_full).size == (800, 20)  # full resolution
    assert all(max(decode_img(im.get("src")).shape[:2]) <= report.OUTPUT_LONG_EDGE for im in imgs(doc))


def test_bad_inputs_raise_named_errors(tmp_path: Path) -> None:
    res = make_results(tmp_path, sets={"paint": 1})
    with pytest.raises(UnknownNameError, match="de00_p95"):
        report.write_report(res, tmp_path / "r", metric="de00_p59")
    with pytest.raises(UsageError, match="worst_k"):
        report.write_report(res, tmp_path / "r", worst_k=-1)
    with pytest.raises(UsageError, match="empty"):
        report.write_report([], tmp_path / "r")
    with pytest.raises(ConfigError, match="schema"):
        report.write_report({**res, "schema": "other"}, tmp_path / "r")
    with pytest.raises(ConfigError, match="not-there.json"):
        report.write_report(tmp_path / "not-there.json", tmp_path / "r")
    rows = [{"set": "nope", "metric": "psnr", "verdict": "pass"}]
    with pytest.raises(ConfigError, match="nope"):
        report.write_report(res, tmp_path / "r", gate_report={"rows": rows})
    with pytest.raises(ConfigError, match="verdict"):
        report.write_report(res, tmp_path / "r", gate_report=[{"set": "paint", "metric": "psnr"}])


# ---------------------------------------------------------------------------------------------
# History and trends
# ---------------------------------------------------------------------------------------------


def test_history_roundtrip_and_errors(tmp_path: Path) -> None:
    h = tmp_path / "hist" / "history.jsonl"
    r1 = make_results(tmp_path, label="net_g_2000", strength=0.3)
    r2 = make_results(tmp_path, label="net_g_4000", strength=0.2, seed=1)
    report.append_history(h, r1, gate_rows(r1))
    report.append_history(h, r2)
    recs = report.load_history(h)
    assert [r["label"] for r in recs] == ["net_g_2000", "net_g_4000"]
    assert [r["step"] for r in recs] == [2000, 4000]
    assert recs[0]["gate"]["rows"][0]["bound"] == "≤ 3" and recs[1]["gate"] is None
    assert recs[1]["sets"]["paint"]["de00_p95"] == r2["sets"]["paint"]["aggregate"]["de00_p95"]
    assert recs[0]["provenance"]["checkpoint_sha256"] == r1["provenance"]["checkpoint_sha256"]
    assert len(h.read_text().splitlines()) == 2
    with open(h, "a") as fh:
        fh.write("\n{not json\n")
    with pytest.raises(ConfigError, match=r"history.jsonl:4"):
        report.load_history(h)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"schema": "something"}) + "\n")
    with pytest.raises(ConfigError, match="colorfid.history"):
        report.load_history(other)
    with pytest.raises(ConfigError, match="not found"):
        report.load_history(tmp_path / "missing.jsonl")


def _trend_svgs(html: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="trend"[^>]*aria-label="([^"]*)".*?</svg>', html, re.S)}


def test_trends_from_history_with_bound_and_baseline(tmp_path: Path) -> None:
    h = tmp_path / "history.jsonl"
    runs = [make_results(tmp_path, label=f"net_g_{k}000", strength=s, seed=i) for i, (k, s) in enumerate([(2, 0.3), (4, 0.2), (6, 0.1)])]
    base = make_results(tmp_path, label="baseline", strength=0.15, seed=9)
    for r in runs[:2]:
        report.append_history(h, r, gate_rows(r, base))
    gate = gate_rows(runs[2], base)
    html = report.write_report(runs[2], tmp_path / "r", history=h, gate_report=gate, baseline=base).read_text()
    parse_strict(html)
    svgs = _trend_svgs(html)
    key = next(k for k in svgs if k.startswith("paint · de00_p95 (mean over images)"))
    svg = svgs[key]
    # three checkpoints (two from the history, the current one appended), x labels in steps
    pts = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    assert len(pts) == 3
    assert [t for t in ("2k", "4k", "6k") if f">{t}</text>" in svg] == ["2k", "4k", "6k"]
    # values fall as desaturation falls: y (SVG, downwards) increases
    ys = [float(p.split(",")[1]) for p in pts]
    assert ys[0] < ys[1] < ys[2]
    assert 'class="bound"' in svg and 'class="base"' in svg
    vals = [r["sets"]["paint"]["aggregate"]["de00_p95"]["mean"] for r in runs]
    for v in vals:  # the accessible description lists every value
        assert sig(v) in key
    assert "bound 3" in key and sig(base["sets"]["paint"]["aggregate"]["de00_p95"]["mean"]) in key
    # "1.0 ± 0.1" draws two bound lines
    sat = svgs[next(k for k in svgs if k.startswith("paint · sat_ratio_hc"))]
    assert sat.count('class="bound"') == 2 + 1  # two lines + the legend swatch


def test_trends_from_several_results_and_single_run_note(tmp_path: Path) -> None:
    runs = [make_results(tmp_path, label=f"net_g_{k}", strength=s, seed=i) for i, (k, s) in enumerate([(1000, 0.3), (2000, 0.2)])]
    html = report.write_report(runs, tmp_path / "r").read_text()
    assert len(_trend_svgs(html)) >= 2
    assert "(detailed below)" in html
    one = report.write_report(runs[0], tmp_path / "one").read_text()
    assert not _trend_svgs(one) and "Trends appear with two or more checkpoints" in one


@pytest.mark.parametrize(
    "bound,expect",
    [("<= 10.0", [10.0]), ("≤ 6", [6.0]), (">= 20", [20.0]), ("1.0 ± 0.10", [0.9, 1.1]), ("[0.9, 1.1]", [0.9, 1.1]),
     ({"max": 10.0}, [10.0]), ({"target": 1.0, "band": 0.08}, [0.92, 1.08]), (None, []), (3, [3.0]),
     ("<= 10.0 (regression > +0.5)", [10.0])],
)
def test_bound_lines(bound: Any, expect: list[float]) -> None:
    assert bound_lines(bound) == pytest.approx(expect)


# ---------------------------------------------------------------------------------------------
# Size, packaging, CLI
# ---------------------------------------------------------------------------------------------


def _bundled_like(tmp: Path, label: str, strength: float, seed: int, size: tuple[int, int], sets: dict[str, int], images: bool = True) -> dict[str, Any]:
    return make_results(tmp, label=label, sets=sets, size=size, strength=strength, seed=seed, compute=False, write_images=images)


#: The bundled sets' shape (golden/stress): images per set; photos are ~288 px on the long edge.
BUNDLED_LIKE = {"colorchecker": 2, "saturated_paint": 10, "photos": 7, "neutral": 6}


@pytest.mark.slow
@pytest.mark.parametrize(
    "size,sets",
    [((288, 288), BUNDLED_LIKE), ((512, 768), {k: 3 for k in BUNDLED_LIKE})],
    ids=["bundled-like", "large-images"],
)
def test_report_of_bundled_sets_with_three_checkpoints_under_5mb(tmp_path: Path, size: tuple[int, int], sets: dict[str, int]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the maps' torch maths: no thread oversubscription under xdist
    try:
        _size_case(tmp_path, size, sets)
    finally:
        torch.set_num_threads(threads)


def _size_case(tmp_path: Path, size: tuple[int, int], sets: dict[str, int]) -> None:
    # only the detailed (last) checkpoint and the baseline need image files; the others feed trends
    runs = [_bundled_like(tmp_path, f"net_g_{(i + 1) * 10000}", 0.3 - 0.08 * i, i, size, sets, images=i == 2) for i in range(3)]
    base = _bundled_like(tmp_path, "baseline", 0.1, 5, size, sets)
    with warnings.catch_warnings():
        warnings.simplefilter("error", colorfid.errors.ColorfidWarning)
        index = report.write_report(runs, tmp_path / "r", baseline=base, gate_report=gate_rows(runs[-1], base))
    n = index.stat().st_size
    assert n <= 5_000_000, n
    doc = parse_strict(index.read_text())
    cards = sum(min(3, k) for k in sets.values())  # worst 3 of each set
    assert len(doc.findall(".//article")) == cards
    assert len(imgs(doc)) == cards * 7  # LQ, output, baseline, GT + 3 maps
    assert all(max(decode_img(im.get("src")).shape[:2]) <= report.OUTPUT_LONG_EDGE for im in imgs(doc))


def test_maps_are_computed_exactly_in_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    gt = _t(scene(37, 29, seed=3))
    pred = _t(desaturate(scene(37, 29, seed=3), 0.4))
    whole = compute_maps(pred, gt, 10.0)
    monkeypatch.setattr("colorfid.report.maps._MAP_CHUNK_PIXELS", 100)  # 3 rows per block, a ragged last block
    blocks = compute_maps(pred, gt, 10.0)
    for k in ("de00", "hue", "sat"):
        assert np.array_equal(getattr(whole, k), getattr(blocks, k)), k
    # and the ΔE values behind the colours are CIEDE2000 of the pair (colour-science oracle)
    colour = pytest.importorskip("colour")
    to_lab = lambda x: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x.permute(1, 2, 0).double().numpy()))  # noqa: E731
    want = colour.delta_E(to_lab(pred), to_lab(gt), method="CIE 2000")
    assert whole.de00_max == pytest.approx(float(want.max()), abs=1e-3)


def test_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    """Built as a wheel (not an editable install), the package carries its templates."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    shutil.copytree(REPO / "colorfid", src / "colorfid", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / f).exists():
            shutil.copy(REPO / f, src / f)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("colorfid-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for t in ("report.html.j2", "report.css.j2", "report.js.j2"):
        assert f"colorfid/templates/{t}" in names, names


def test_cli_report_from_results_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from colorfid.cli import main
    from colorfid.evaluation import Results

    paths = []
    for i, s in enumerate((0.3, 0.15)):
        paths.append(Results.from_dict(make_results(tmp_path, label=f"net_g_{i + 1}000", strength=s, seed=i)).save(tmp_path / f"r{i}.json"))
    hist = tmp_path / "h.jsonl"
    report.append_history(hist, paths[0])
    out = tmp_path / "out"
    th = tmp_path / "colorfid.toml"
    th.write_text('[defaults]\nde00_p95 = { max = 3.0 }\n')
    rc = main(["report", str(paths[0]), str(paths[1]), "--out", str(out), "--history", str(hist), "--worst-k", "1",
               "--metric", "psnr", "--config", str(th), "--append-history"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert str(out / "index.html") in printed and "gate: FAIL" in printed
    html = (out / "index.html").read_text()
    parse_strict(html)
    assert html.count('class="card"') == 2  # one per set
    assert "✗ FAIL" in html and "fail: bound" in html
    assert [r["label"] for r in report.load_history(hist)] == ["net_g_1000", "net_g_2000"]  # no duplicate
    assert report.load_history(hist)[-1]["gate"]["passed"] is False
    assert main(["report", str(paths[0]), "--out", str(out), "--metric", "nope", "--no-gate"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err
    assert main(["report", "--out", str(out)]) == 2
    assert "give results JSON files" in capsys.readouterr().err


def test_cli_report_evaluates_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from colorfid.cli import main
    from colorfid.models.checkpoint import save_model
    from colorfid.models.nafnet import NAFNet

    make_results(tmp_path, sets={"paint": 2}, size=(32, 32))  # writes sets/paint/{gt,lq}
    ckpts = []
    for step in (1000, 2000):
        torch.manual_seed(step)
        ckpts.append(save_model(NAFNet(width=8, middle_blk_num=1), tmp_path / f"net_g_{step}.pth"))
    out = tmp_path / "out"
    rc = main(["report", "--checkpoint", *map(str, ckpts), "--sets", str(tmp_path / "sets" / "paint"), "--out", str(out),
               "--no-gate", "--device", "cpu", "--cache", str(tmp_path / "cache"), "--worst-k", "1"])
    assert rc == 0, capsys.readouterr().err
    html = (out / "index.html").read_text()
    parse_strict(html)
    for c in ckpts:
        assert hashlib.sha256(c.read_bytes()).hexdigest() in html
        assert (out / "checkpoints" / f"{c.stem}.json").is_file()
    assert len(_trend_svgs(html)) >= 1 and ">1k</text>" in html and ">2k</text>" in html
    assert "output of paint_" in html  # the cached model outputs are shown
