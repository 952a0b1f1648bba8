"""Tests of colorfid.stress and of the bundled stress sets / training pairs.

Oracles: colour-science (ColorChecker rendering, sRGB transfer function, CIELAB),
scikit-image's own bundled photographs, numpy block means, and hand-built malformed sets.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorfid.errors import StressSetError, UnknownNameError, UsageError
from colorfid.stress import (
    BUNDLED_SETS,
    IMAGE_SUFFIXES,
    OPT_IN_SETS,
    Pair,
    StressSet,
    attach_predictions,
    bundled_set,
    bundled_set_names,
    bundled_training_set,
    golden_dir,
    load_stress_set,
    resolve_sets,
    stress_dir,
    training_dir,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def _png(path: Path, w: int = 8, h: int = 6, value: int = 128, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3), value, np.uint8)
    arr[0, 0] = (255, 0, 0)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def make_set(root: Path, gt: dict[str, tuple[int, int]], lq: dict[str, tuple[int, int]] | None = None,
             pred: dict[str, tuple[int, int]] | None = None, toml: str | None = None) -> Path:
    """A set folder: {stem: (w, h)} per side; stems may carry a suffix ("a.jpg")."""
    for side, files in (("gt", gt), ("lq", lq), ("pred", pred)):
        if files is None:
            continue
        (root / side).mkdir(parents=True, exist_ok=True)
        for stem, (w, h) in files.items():
            name = stem if Path(stem).suffix else stem + ".png"
            img = Image.fromarray(np.full((h, w, 3), 100, np.uint8))
            img.save(root / side / name)
    if toml is not None:
        (root / "set.toml").write_text(toml)
    return root


def _load_script():
    pytest.importorskip("colour")
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    path = REPO / "scripts" / "make_golden_data.py"
    spec = importlib.util.spec_from_file_location("make_golden_data", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["make_golden_data"] = mod
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _load_script()


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


# --------------------------------------------------------------------------- valid sets


def test_load_valid_lq_set(tmp_path):
    root = make_set(tmp_path / "kitchens", {"a": (8, 6), "b": (5, 7)}, lq={"a.jpg": (8, 6), "b": (5, 7)},
                    toml='description = "my kitchens"\n[protocol]\nhc_saturation = 0.4\nworst_k = 2\n')
    (root / "gt" / "notes.txt").write_text("not an image")
    (root / "lq" / ".DS_Store").write_bytes(b"\0")
    s = load_stress_set(root)
    assert s.name == "kitchens" and s.kind == "lq" and len(s) == 2
    assert s.names == ["a", "b"]
    a = s.get("a")
    assert a.lq is not None and a.lq.name == "a.jpg" and a.pred is None and a.size == (6, 8)
    assert s.get("b").size == (7, 5)
    assert s.description == "my kitchens"
    assert s.protocol_overrides == {"hc_saturation": 0.4, "worst_k": 2}
    assert sorted(p.name for p in s.ignored) == [".DS_Store", "notes.txt"]
    proto = s.metric_protocol()
    assert proto.hc_saturation == 0.4 and proto.worst_k == 2
    with pytest.raises(UnknownNameError, match="'a', 'b'|\\['a', 'b'\\]"):
        s.get("zzz")


def test_pred_only_and_both_sides(tmp_path):
    s = load_stress_set(make_set(tmp_path / "p", {"x": (4, 4)}, pred={"x": (4, 4)}))
    assert s.kind == "pred" and s.pairs[0].pred is not None and s.pairs[0].lq is None
    both = make_set(tmp_path / "b", {"x": (4, 4)}, lq={"x": (4, 4)}, pred={"x": (4, 4)})
    s = load_stress_set(both)
    assert s.kind == "pred" and s.pairs[0].lq is not None and s.pairs[0].pred is not None
    assert load_stress_set(both, kind="lq").kind == "lq"
    assert s.pairs[0].input("lq") == s.pairs[0].lq and s.pairs[0].input("pred") == s.pairs[0].pred


def test_exif_orientation_swaps_size(tmp_path):
    # a 8x4 JPEG stored sideways with EXIF orientation 6 (rotate 90°) displays as 4x8
    root = tmp_path / "exif"
    (root / "lq").mkdir(parents=True)
    img = Image.fromarray(np.full((4, 8, 3), 90, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(root / "lq" / "r.jpg", exif=exif.tobytes())
    _png(root / "gt" / "r.png", w=4, h=8)
    s = load_stress_set(root)
    assert s.pairs[0].size == (8, 4)


def test_to_dict_roundtrip_plain_types(tmp_path):
    import json

    s = load_stress_set(make_set(tmp_path / "s", {"a": (3, 2)}, lq={"a": (3, 2)}, toml='[degradation]\nexposure = 0.7\n'))
    d = s.to_dict()
    json.dumps(d)  # plain types only
    back = StressSet.from_dict(d)
    assert back == s
    assert Pair.from_dict(s.pairs[0].to_dict()) == s.pairs[0]


def test_check_modes(tmp_path):
    root = make_set(tmp_path / "s", {"a": (3, 2)}, lq={"a": (3, 2)})
    assert load_stress_set(root, check="none").pairs[0].size is None
    assert load_stress_set(root, check="decode").pairs[0].size == (2, 3)
    with pytest.raises(UnknownNameError, match="header"):
        load_stress_set(root, check="full")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="'lq', 'pred'"):
        load_stress_set(root, kind="gt")  # type: ignore[arg-type]


def test_truncated_jpeg_needs_decode(tmp_path):
    root = make_set(tmp_path / "s", {"a": (64, 64)}, lq={"a.jpg": (64, 64)})
    data = (root / "lq" / "a.jpg").read_bytes()
    (root / "lq" / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(StressSetError, match=r"unreadable image lq/a\.jpg"):
        load_stress_set(root, check="decode")


def test_attach_predictions(tmp_path):
    s = load_stress_set(make_set(tmp_path / "s", {"a": (4, 3), "b": (4, 3)}, lq={"a": (4, 3), "b": (4, 3)}))
    preds = tmp_path / "preds"
    _png(preds / "a.png", 4, 3)
    _png(preds / "b.png", 4, 3)
    p = attach_predictions(s, preds)
    assert p.kind == "pred" and all(x.pred is not None and x.lq is not None for x in p.pairs)
    _png(preds / "b.png", 5, 3)
    _png(preds / "c.png", 4, 3)
    (preds / "a.png").unlink()
    with pytest.raises(StressSetError) as ei:
        attach_predictions(s, preds)
    msg = str(ei.value)
    assert "'a'" in msg and "'c'" in msg and "size mismatch for 'b'" in msg
    with pytest.raises(StressSetError, match="does not exist"):
        attach_predictions(s, tmp_path / "nope")


# --------------------------------------------------------------------------- malformed sets

MALFORMED = {
    # case: (builder(root), substrings every one of which the message must contain)
    "missing_gt": (lambda r: make_set(r, {}, lq={"a": (4, 4)}) and _rm(r / "gt"), ["missing gt/"]),
    "no_lq_no_pred": (lambda r: make_set(r, {"a": (4, 4)}), ["neither lq/", "nor pred/"]),
    "empty_gt": (lambda r: make_set(r, {}, lq={"a": (4, 4)}), ["gt/ holds no images"]),
    "empty_lq_with_junk": (lambda r: make_set(r, {"a": (4, 4)}, lq={}) and (r / "lq" / "x.exr").write_bytes(b"1"),
                           ["lq/ holds no images", "x.exr"]),
    "unmatched_both_sides": (lambda r: make_set(r, {"a": (4, 4), "b": (4, 4), "c": (4, 4)}, lq={"a": (4, 4), "d": (4, 4)}),
                             ["no lq/ match: 'b', 'c'", "lq/ image(s) with no gt/ match: 'd'"]),
    "size_mismatch": (lambda r: make_set(r, {"a": (4, 4), "b": (8, 6)}, lq={"a": (4, 4), "b": (8, 5)}),
                      ["size mismatch for 'b'", "8x6", "8x5"]),
    "unreadable_garbage_and_empty": (
        lambda r: make_set(r, {"a": (4, 4), "b": (4, 4)}, lq={"a": (4, 4), "b": (4, 4)})
        and (r / "lq" / "a.png").write_bytes(b"this is not a png")
        and (r / "gt" / "b.png").write_bytes(b""),
        ["unreadable image lq/a.png", "unreadable image gt/b.png"]),
    "truncated_png": (lambda r: make_set(r, {"a": (64, 64)}, lq={"a": (64, 64)}) and _truncate(r / "gt" / "a.png"),
                      ["unreadable image gt/a.png"]),
    "duplicate_stem": (lambda r: make_set(r, {"a": (4, 4), "a.jpg": (4, 4)}, lq={"a": (4, 4)}),
                       ["several files with the stem 'a'", "a.jpg", "a.png"]),
    "unknown_toml_key": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, toml='descripton = "typo"\n'),
                         ["unknown key(s) ['descripton']", "set.toml"]),
    "unknown_protocol_field": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, toml="[protocol]\nhc_sat = 0.4\n"),
                               ["unknown [protocol] field(s) ['hc_sat']", "hc_saturation"]),
    "protocol_not_a_number": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)},
                                                 toml='[protocol]\nhc_saturation = "high"\nworst_k = 2.5\ngrey_tolerance = true\n'),
                              ["hc_saturation must be a finite number", "worst_k must be an integer", "grey_tolerance"]),
    "bad_toml_syntax": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, toml="description = \n"),
                        ["not valid TOML", "set.toml"]),
    "description_not_string": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, toml="description = 3\n"),
                               ["'description' must be a string"]),
    "protocol_not_table": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, toml="protocol = 3\n"),
                           ["'protocol' must be a table"]),
    "pred_mismatch_when_both": (lambda r: make_set(r, {"a": (4, 4)}, lq={"a": (4, 4)}, pred={"a": (4, 5), "z": (4, 4)}),
                                ["size mismatch for 'a'", "pred/", "'z'"]),
    "all_problems_at_once": (
        lambda r: make_set(r, {"a": (4, 4), "b": (4, 4)}, lq={"a": (5, 4), "c": (4, 4)}, toml="extra = 1\n"),
        ["unknown key(s) ['extra']", "no lq/ match: 'b'", "no gt/ match: 'c'", "size mismatch for 'a'"]),
}


def _rm(p: Path) -> bool:
    import shutil

    shutil.rmtree(p)
    return True


def _truncate(p: Path) -> bool:
    arr = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    return True


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_set_raises_naming_offenders(tmp_path, case):
    build, needles = MALFORMED[case]
    root = tmp_path / f"set_{case}"
    build(root)
    with pytest.raises(StressSetError) as ei:
        load_stress_set(root)
    msg = str(ei.value)
    assert f"set_{case}" in msg  # the set and its folder are named
    for needle in needles:
        assert needle in msg, f"{needle!r} not in:\n{msg}"
    assert isinstance(ei.value, UsageError)  # -> exit 2 (CLI) / 4 (pytest)


def test_kind_asked_but_missing(tmp_path):
    root = make_set(tmp_path / "s", {"a": (4, 4)}, lq={"a": (4, 4)})
    with pytest.raises(StressSetError, match=r"no pred/ folder: gating saved predictions needs pred/"):
        load_stress_set(root, kind="pred")


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(StressSetError, match="does not exist"):
        load_stress_set(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StressSetError, match="is not a folder"):
        load_stress_set(tmp_path / "f")


# --------------------------------------------------------------------------- resolve_sets / golden


def test_resolve_bundled_and_paths(tmp_path, monkeypatch):
    names = bundled_set_names()
    assert names == list(BUNDLED_SETS)
    mine = make_set(tmp_path / "mine", {"a": (4, 4)}, lq={"a": (4, 4)})
    parent = tmp_path / "many"
    make_set(parent / "one", {"a": (4, 4)}, lq={"a": (4, 4)})
    make_set(parent / "two", {"a": (4, 4)}, pred={"a": (4, 4)})
    sets = resolve_sets(["saturated_paint", str(mine), Path(parent), f"renamed={mine}"])
    assert [s.name for s in sets] == ["saturated_paint", "mine", "one", "two", "renamed"]
    (parent / "not_a_set").mkdir()  # a folder of sets runs every set or none: never fewer sets, silently
    with pytest.raises(StressSetError, match="not_a_set is not a stress set"):
        resolve_sets([Path(parent)])
    assert sets[0].root == stress_dir() / "saturated_paint"
    # a bare word that is a folder in the cwd (and not bundled) is taken as a path
    monkeypatch.chdir(tmp_path)
    assert resolve_sets(["mine"])[0].root == Path("mine")
    assert resolve_sets("mine")[0].name == "mine"


def test_resolve_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError) as ei:
        resolve_sets(["saturated_pain"])
    assert "saturated_pain" in str(ei.value) and "saturated_paint" in str(ei.value) and "colorchecker" in str(ei.value)
    with pytest.raises(StressSetError, match="does not exist"):
        resolve_sets(["./nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StressSetError, match="is not a stress set"):
        resolve_sets(["./empty"])
    with pytest.raises(StressSetError, match="empty list"):
        resolve_sets([])
    a = make_set(tmp_path / "x" / "same", {"a": (4, 4)}, lq={"a": (4, 4)})
    b = make_set(tmp_path / "y" / "same", {"a": (4, 4)}, lq={"a": (4, 4)})
    with pytest.raises(StressSetError, match="share a name"):
        resolve_sets([str(a), str(b)])
    assert [s.name for s in resolve_sets([str(a), f"other={b}"])] == ["same", "other"]
    with pytest.raises(StressSetError, match="saturated_paint"):
        resolve_sets(["saturated_paint", f"saturated_paint={a}"])


def test_bundled_set_unknown_name():
    with pytest.raises(UnknownNameError, match="neutral"):
        bundled_set("natural")
    assert bundled_set("neutral").name == "neutral"


def test_golden_dir_env_override(tmp_path, monkeypatch):
    assert golden_dir() == REPO / "golden"
    g = tmp_path / "g"
    make_set(g / "stress" / "custom", {"a": (4, 4)}, lq={"a": (4, 4)})
    make_set(g / "stress" / "neutral", {"a": (4, 4)}, lq={"a": (4, 4)})
    monkeypatch.setenv("COLORFID_GOLDEN", str(g))
    assert golden_dir() == g and training_dir() == g / "train"
    assert bundled_set_names() == ["neutral", "custom"]
    assert [s.name for s in resolve_sets(None)] == ["neutral", "custom"]
    monkeypatch.setenv("COLORFID_GOLDEN", str(tmp_path / "missing"))
    with pytest.raises(StressSetError, match="COLORFID_GOLDEN"):
        golden_dir()


# --------------------------------------------------------------------------- the bundled data


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def test_bundled_sets_shape_and_budget():
    sets = resolve_sets(None)
    assert [s.name for s in sets] == ["colorchecker", "saturated_paint", "photos", "neutral"]
    for s in sets + [bundled_set(n) for n in OPT_IN_SETS]:
        assert 6 <= len(s) <= 12, s.name
        assert s.kind == "lq" and s.description and s.provenance.get("script") == "scripts/make_golden_data.py"
        for p in s.pairs:
            assert p.gt.suffix == ".png" and p.size is not None and 192 <= max(p.size) <= 384, (s.name, p)
        assert _dir_bytes(s.root) <= 1_600_000, (s.name, _dir_bytes(s.root))
    train = bundled_training_set()
    assert 80 <= len(train) <= 120
    assert all(128 <= max(p.size) <= 192 for p in train.pairs)
    assert _dir_bytes(training_dir()) <= 5_000_000


def test_training_pairs_never_gate_images():
    def digests(paths):
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}

    gate = set()
    for s in map(bundled_set, bundled_set_names()):  # the opt-in sets too
        gate |= digests([p.gt for p in s.pairs]) | digests([p.lq for p in s.pairs])
    train = bundled_training_set()
    assert not gate & (digests([p.gt for p in train.pairs]) | digests([p.lq for p in train.pairs]))
    # and no training GT is a crop / rescale of a gate photograph: compare 16x16 thumbnails
    def thumbs(paths):
        return [np.asarray(Image.open(p).convert("L").resize((16, 16), Image.BILINEAR), np.float64) for p in paths]

    gate_t = thumbs([p.gt for p in bundled_set("photos").pairs] + [p.gt for p in bundled_set("colorization").pairs])
    for t in thumbs([p.gt for p in train.pairs if p.name.startswith("photo_")]):
        for g in gate_t:
            assert np.corrcoef(t.ravel(), g.ravel())[0, 1] < 0.95


def _degrade_ref(gt: np.ndarray, d: dict) -> np.ndarray:
    """The documented photometric steps (set.toml ``steps``), with colour-science's sRGB transfer."""
    colour = pytest.importorskip("colour")
    lin = np.asarray(colour.cctf_decoding(gt, function="sRGB")) * d["exposure"] * np.asarray(d["wb"])
    y = np.asarray(colour.cctf_encoding(np.clip(lin, 0, 1), function="sRGB"))
    y = d["pivot"] + d["contrast"] * (y - d["pivot"])
    luma = (y @ np.array([0.299, 0.587, 0.114]))[..., None]
    y = luma + d["saturation"] * (y - luma)
    n = np.sqrt(((y - luma) ** 2).sum(-1, keepdims=True))
    return luma + (y - luma) / (1 + d.get("chroma_rolloff", 0.0) * n)


def test_saturated_paint_set_toml_documents_the_degradation():
    """Re-apply each image's [degradation.images.<stem>] of set.toml to its GT: the LQ must be that
    plus zero-mean noise of the stated sigma. This is what lets a test build an exact inverse
    "restoring" model. The per-image values lie in the documented ranges, at or past the strong
    end of the training range in exposure, contrast and warm cast."""
    s = bundled_set("saturated_paint")
    d = s.degradation
    assert d["kind"] == "per_image"
    # exposure, contrast and the warm cast at the strong end of the training range or past it
    assert d["exposure_range"][1] <= d["train_exposure_range"][0] + 0.05
    assert d["contrast_range"][1] <= d["train_contrast_range"][0] + 0.05
    assert d["wb_r_range"][0] >= d["train_wb_r_range"][1] and d["wb_b_range"][1] <= d["train_wb_b_range"][0]
    for p in s.pairs:
        im = d["images"][p.name]
        assert set(im) >= {"exposure", "wb", "contrast", "pivot", "saturation", "noise_sigma", "chroma_rolloff"}
        for k in ("exposure", "contrast", "saturation", "noise_sigma", "chroma_rolloff"):
            lo, hi = d[f"{k}_range"]
            assert lo <= im[k] <= hi, (p.name, k, im[k])
        gt, lq = _read(p.gt), _read(p.lq)
        resid = lq - _degrade_ref(gt, im)
        assert abs(resid.mean()) < 0.002, p.name
        # noise sigma plus 8-bit rounding (uniform, 1/255/sqrt(12))
        expected = np.hypot(im["noise_sigma"], 1 / 255 / np.sqrt(12))
        assert abs(resid.std() - expected) < 0.06 * expected, (p.name, resid.std(), expected)


def test_saturated_paint_is_a_painted_minority_and_lq_desaturated():
    s = bundled_set("saturated_paint")

    def hsv_s(x):
        mx = x.max(-1)
        return np.where(mx > 0, (mx - x.min(-1)) / np.maximum(mx, 1e-12), 0.0)

    for p in s.pairs:
        gt, lq = _read(p.gt), _read(p.lq)
        m = hsv_s(gt) >= 0.5
        assert 0.12 <= m.mean() <= 0.4, (p.name, m.mean())  # a painted minority of the frame
        ratio = hsv_s(lq)[m].mean() / hsv_s(gt)[m].mean()
        assert 0.5 < ratio < 0.85, (p.name, ratio)  # the "repainted walls" loss
        assert lq.mean() < gt.mean()


def test_training_rooms_paint_is_a_minority():
    """Training pairs: mostly unpainted rooms; where a room is painted, 5-15 % of it (plus wood
    or fabric that may cross the mask's edge), in a quarter of the rooms."""
    train = bundled_training_set()

    def hc(p):
        x = _read(p.gt)
        mx = x.max(-1)
        return (np.where(mx > 0, (mx - x.min(-1)) / np.maximum(mx, 1e-12), 0.0) >= 0.5).mean()

    rooms = [p for p in train.pairs if p.name.startswith(("room_", "paint_"))]
    painted = [p for p in rooms if p.name.startswith("paint_")]
    assert len(rooms) >= 48 and 0.15 <= len(painted) / len(rooms) <= 0.35
    shares = [hc(p) for p in painted]
    assert all(0.03 <= v <= 0.3 for v in shares), shares
    assert np.mean([hc(p) for p in rooms]) < 0.08


def test_colorchecker_gt_matches_colour_science():
    """Patch centres of the GT charts equal colour-science's own D65 rendering of the
    ColorChecker N Ohta spectra (sd_to_XYZ, ASTM E308 weights) to within 1/255."""
    colour = pytest.importorskip("colour")
    s = bundled_set("colorchecker")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sds = colour.SDS_COLOURCHECKERS["ColorChecker N Ohta"]
        cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
        ill = colour.SDS_ILLUMINANTS["D65"]
        ref = []
        for name in sds:
            xyz = colour.sd_to_XYZ(sds[name], cmfs, ill) / 100.0
            rgb = colour.XYZ_to_RGB(xyz, "sRGB", apply_cctf_encoding=False, chromatic_adaptation_transform=None)
            ref.append(colour.cctf_encoding(np.clip(rgb, 0, 1), function="sRGB"))
    ref = np.asarray(ref)
    gt = _read(s.pairs[0].gt)
    patch, gap, my, mx = 40, 6, 7, 9
    got = np.array([
        gt[my + r * (patch + gap) + patch // 2, mx + c * (patch + gap) + patch // 2] for r in range(4) for c in range(6)
    ])
    assert np.abs(got - ref).max() <= 1 / 255 + 1e-9, np.abs(got - ref).max() * 255
    # every GT is the same D65 chart; the LQs differ from it (casts / exposure)
    for p in s.pairs:
        assert np.array_equal(_read(p.gt), gt)
        assert np.abs(_read(p.lq) - gt).mean() > 0.03, p.name


def test_photos_gt_are_scikit_image_photos():
    """astronaut's GT is scikit-image's astronaut averaged over 2x2 blocks (512 -> 256)."""
    data = pytest.importorskip("skimage.data")
    p = bundled_set("photos").get("astronaut")
    ref = data.astronaut().astype(np.float64).reshape(256, 2, 256, 2, 3).mean((1, 3)) / 255.0
    assert np.abs(_read(p.gt) - ref).max() <= 1.01 / 255


def test_neutral_is_low_chroma_and_lq_cast_warm():
    colour = pytest.importorskip("colour")
    for p in bundled_set("neutral").pairs:
        gt, lq = _read(p.gt), _read(p.lq)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab_gt = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(gt))
            lab_lq = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(lq))
        chroma = np.hypot(lab_gt[..., 1], lab_gt[..., 2])
        assert np.median(chroma) < 6.0, (p.name, np.median(chroma))
        assert lab_lq[..., 2].mean() > lab_gt[..., 2].mean() + 1.0  # warmer (more yellow)
        assert lab_lq[..., 0].mean() < lab_gt[..., 0].mean()  # darker


# --------------------------------------------------------------------------- the generator


def test_generator_is_deterministic(gen):
    a = gen.render_room(gen.rng_for(7, "t", 0), 48, 32, "interior", "teal", paint_share=(0.1, 0.3))
    b = gen.render_room(gen.rng_for(7, "t", 0), 48, 32, "interior", "teal", paint_share=(0.1, 0.3))
    c = gen.render_room(gen.rng_for(7, "t", 1), 48, 32, "interior", "teal", paint_share=(0.1, 0.3))
    assert a.shape == (32, 48, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    x = gen.from_u8(gen.to_u8(a))
    d = gen.sample_degradation(gen.rng_for(1, "d", 0), gen.PAINT_RANGES)
    assert np.array_equal(d(x, gen.rng_for(1, "d", 0)), d(x, gen.rng_for(1, "d", 0)))


def test_generator_photometric_steps_are_invertible(gen):
    """Steps 1-4b of the documented degradation never clip, so they invert exactly (the chroma
    roll-off's inverse: y = Y + (y' - Y) / (1 - k |y' - Y|))."""
    colour = pytest.importorskip("colour")
    d = gen.sample_degradation(gen.rng_for(3, "inv", 0), gen.PAINT_RANGES)
    assert d.chroma_rolloff > 0
    x = np.random.default_rng(0).uniform(0, 1, (64, 3))
    y = d.photometric(x)
    luma = (y @ np.array([0.299, 0.587, 0.114]))[..., None]
    n = np.sqrt(((y - luma) ** 2).sum(-1, keepdims=True))
    z = luma + (y - luma) / (1 - d.chroma_rolloff * n)
    z = luma + (z - luma) / d.saturation
    z = d.pivot + (z - d.pivot) / d.contrast
    lin = np.asarray(colour.cctf_decoding(z, function="sRGB")) / (d.exposure * np.asarray(d.wb))
    assert np.allclose(colour.cctf_encoding(lin, function="sRGB"), x, atol=1e-9)


def test_paint_share_lands_in_the_asked_range(gen):
    for i in range(6):
        img = gen.render_room(gen.rng_for(11, "share", i), 96, 64, "interior", "blue", paint_share=(0.2, 0.35))
        share = (gen.hsv_saturation(img) >= 0.5).mean()
        assert 0.15 <= share <= 0.45, (i, share)  # painted surfaces (+/- edges, shading)
        plain = gen.render_room(gen.rng_for(11, "share", i), 96, 64, "interior", None)
        assert (gen.hsv_saturation(plain) >= 0.5).mean() < 0.05, i  # unpainted rooms: almost none


def test_colorization_is_bundled_but_opt_in():
    assert set(OPT_IN_SETS) <= set(BUNDLED_SETS) and "colorization" in OPT_IN_SETS
    assert "colorization" in bundled_set_names()
    assert "colorization" not in [s.name for s in resolve_sets(None)]  # "every bundled set" leaves it out
    (s,) = resolve_sets(["colorization"])  # named, it runs
    assert s.name == "colorization" and s.kind == "lq" and len(s) == 10


def test_colorization_lq_is_the_gt_luminance_grey():
    """LQ = the GT's CIE Y (linear sRGB, IEC 61966-2-1), sRGB-encoded, rounded to 8 bits, R = G = B
    exactly: colour-science's decode / Y row / encode, and colorfid's to_grayscale (the trainer's
    ``degradation: grayscale``) rounded, both give the committed bytes."""
    colour = pytest.importorskip("colour")
    import torch

    from colorfid.io import read_image
    from colorfid.train.data import to_grayscale

    s = bundled_set("colorization")
    assert s.degradation["kind"] == "grayscale" and "to_grayscale" in s.degradation["same_as"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_row = np.asarray(colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ)[1]
    for p in s.pairs:
        lq = np.asarray(Image.open(p.lq).convert("RGB"))
        assert (lq[..., 0] == lq[..., 1]).all() and (lq[..., 1] == lq[..., 2]).all(), p.name
        gt = _read(p.gt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.rint(colour.cctf_encoding(colour.cctf_decoding(gt, function="sRGB") @ y_row, function="sRGB") * 255)
        assert np.array_equal(lq[..., 0], ref.astype(np.uint8)), p.name
        ours = to_grayscale(read_image(p.gt).to(torch.float64))
        assert np.array_equal(np.rint(ours.numpy() * 255).astype(np.uint8).transpose(1, 2, 0), lq), p.name


def test_colorization_scenes_hide_hue_from_lightness(gen):
    """The synthetic scenes hold objects of one CIELAB L* in hues spread around the circle: in
    their coloured pixels L* stays at the documented value (8-bit rounding and the discs' ±1
    texture aside) and the chroma-weighted hue spread of the GT is near 1. The photographs are
    scikit-image files no training pair uses."""
    colour = pytest.importorskip("colour")
    from colorfid.io import read_image
    from colorfid.metrics import chroma_moments, hue_spread

    s = bundled_set("colorization")
    images = s.degradation["images"]
    synthetic = [p for p in s.pairs if images[p.name]["source"] == "synthetic"]
    photos = [p for p in s.pairs if images[p.name]["source"] != "synthetic"]
    assert len(synthetic) == 5 and len(photos) == 5
    for p in synthetic:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(_read(p.gt)))
        c = np.hypot(lab[..., 1], lab[..., 2])
        if "lightness" in images[p.name]:
            core = c >= 0.9 * images[p.name]["chroma"]
            assert core.mean() > 0.05, p.name
            assert np.abs(lab[..., 0][core] - images[p.name]["lightness"]).max() < 1.6, p.name
        assert hue_spread(chroma_moments(read_image(p.gt).double()), 2.3) > 0.9, p.name
    train_files = {f for f, _ in gen.PHOTOS_TRAIN_FILES.values()} | {gen.GRASS_TRAIN[0]}
    for p in photos:
        assert images[p.name]["source"] not in train_files, p.name


def test_committed_image_matches_generator(gen):
    """The first saturated_paint image and the first chart are what the script makes now
    (allowing a 1-level rounding difference on <0.1% of values for other CPUs / libm)."""
    first_scene = lambda: (x for x in gen.build_colorization() if x[0] == "discs_l62")  # noqa: E731
    for build, set_name in ((gen.build_saturated_paint, "saturated_paint"), (gen.build_colorchecker, "colorchecker"),
                            (first_scene, "colorization")):
        stem, gt, lq, _ = next(iter(build()))
        p = bundled_set(set_name).get(stem)
        for arr, path in ((gt, p.gt), (lq, p.lq)):
            committed = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
            diff = np.abs(committed - arr.astype(np.int16))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (path, diff.max(), (diff > 0).mean())


def test_image_suffixes_cover_common_formats():
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff"} <= set(IMAGE_SUFFIXES)
