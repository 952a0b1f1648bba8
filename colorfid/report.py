"""HTML regression reports: results (and a gate verdict) -> one self-contained ``index.html``.

The report puts the failing pixels in front of the reader: a set x metric matrix (value, bound,
baseline, signed change coloured by the metric's direction, verdict; worst sets first), then per
stress set the worst-k images by a chosen metric (default ``de00_p95``) as
LQ | output | baseline output | GT, three maps on fixed scales with colour bars in their units,
a swipe slider output <-> GT, the per-image metric table and health flags, and finally trends
across checkpoints as inline SVG line plots with the bound and the baseline marked.

The file is self-contained: styles and the few lines of script are inline, images are embedded
as compressed JPEG/PNG ``data:`` URIs (long edge <= :data:`OUTPUT_LONG_EDGE` px), and a
Content-Security-Policy forbids every fetch except ``data:`` images. With JavaScript off the
report stays complete (the slider degrades to the two images side by side); it prints cleanly.

Maps (no second implementation of any formula; all maths comes from the lower rooms):

* ΔE2000 map — :func:`colorfid.difference.delta_e_2000` of :func:`colorfid.color.srgb_to_lab`
  (as :func:`colorfid.metrics.delta_e_map`; CIEDE2000, Sharma, Wu & Dalal 2005),
  shown on the fixed scale :data:`DE00_SCALE` = 0..20 ΔE00 (values above 20 saturate).
* Hue-shift map — signed hue difference ``h_out - h_gt`` wrapped to (-180, 180] degrees (the
  wrap of :func:`colorfid.metrics.hue_shift`), hue
  angles from :func:`colorfid.color.lab_to_lch` (CIE 015:2018 §8.2.2), drawn where the GT is
  chromatic (C*ab >= the protocol's ``hue_chroma_floor``); fixed scale :data:`HUE_SCALE`.
* Saturation-ratio map — ``S_out / S_gt`` with HSV saturation from
  :func:`colorfid.color.hsv_saturation` (Smith 1978), drawn where ``S_gt >=``
  :data:`SAT_MAP_MIN_GT`; fixed logarithmic scale :data:`SAT_SCALE` (x0.5 .. x2).

History: :func:`append_history` adds one JSON line per evaluated checkpoint (aggregates, gate
rows, provenance); :func:`load_history` reads them back; :func:`write_report` plots them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import functools
import io as _bytesio
import json
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._atomic import atomic_open
from ._version import __version__
from .errors import ColorfidWarning, ConfigError, ImageReadError, UsageError

__all__ = [
    "write_report",
    "append_history",
    "load_history",
    "history_record",
    "DE00_SCALE",
    "HUE_SCALE",
    "SAT_SCALE",
    "SAT_MAP_MIN_GT",
    "MAX_REPORT_BYTES",
    "GREY_COLLAPSE_WARN",
    "GREY_COLLAPSE_CRITICAL",
    "HISTORY_SCHEMA",
]

#: Fixed scale of the ΔE2000 heatmap, in ΔE00 units (>= 20 saturates). ~1 is "just noticeable",
#: 2-10 "perceptible at a glance", > 10 "a different colour".
DE00_SCALE: tuple[float, float] = (0.0, 20.0)
#: Fixed scale of the hue-shift map, degrees (output minus GT; beyond +-30 saturates).
HUE_SCALE: tuple[float, float] = (-30.0, 30.0)
#: Fixed scale of the saturation-ratio map, S_out / S_gt, drawn on a log2 axis (x0.5 .. x2).
SAT_SCALE: tuple[float, float] = (0.5, 2.0)
#: The saturation-ratio map is drawn where the GT's HSV saturation is at least this.
SAT_MAP_MIN_GT: float = 0.10
#: Size the report aims to stay under; beyond it images are re-encoded smaller, then a warning.
MAX_REPORT_BYTES: int = 5_000_000
#: ``grey_collapse`` (fraction of the GT's coloured pixels rendered grey) that flags warn / critical.
GREY_COLLAPSE_WARN: float = 0.25
GREY_COLLAPSE_CRITICAL: float = 0.6
#: ``schema`` field of a history line.
HISTORY_SCHEMA = "colorfid.history"
HISTORY_SCHEMA_VERSION = 1

#: The maps are computed in row blocks of about this many pixels (memory stays bounded).
_MAP_CHUNK_PIXELS = 1 << 20
#: Long edge (px) of the embedded output and GT (they double as the slider's images).
OUTPUT_LONG_EDGE = 768
#: Long edge (px) of the embedded LQ, baseline output and the three maps.
SMALL_LONG_EDGE = 512
#: (output long edge, small long edge, JPEG quality) tried in turn until the report fits.
_ENCODE_LADDER: tuple[tuple[int, int, int], ...] = ((768, 512, 82), (640, 400, 74), (512, 320, 66))

#: Matrix columns when no gate report is given (those present in the results), stat "mean".
DEFAULT_MATRIX_METRICS = (
    "de00_p95",
    "de00_hc_p95",
    "sat_ratio_hc",
    "hue_shift_hc_mean",
    "brightness_ratio",
    "psnr",
    "ssim",
)
#: Columns of the per-image table (those present in the results).
TABLE_METRICS = (
    "de00_mean",
    "de00_p95",
    "de00_max",
    "de00_hc_p95",
    "sat_ratio_hc",
    "chroma_ratio_hc",
    "hue_shift_hc_mean",
    "hue_shift_hc_p95",
    "brightness_ratio",
    "psnr",
    "ssim",
)

_VERDICT_RANK = {"fail_bound": 0, "fail_regression": 1, "new": 2, "pass": 3, "improved": 4}
_VERDICT_TEXT = {
    "fail_bound": "✗ fail: bound",
    "fail_regression": "✗ fail: regression",
    "new": "• new",
    "pass": "✓ pass",
    "improved": "▲ improved",
}

# Colour maps: anchors in sRGB hex, linearly interpolated into a 256-entry table.
# Sequential "inferno" (van der Walt & Smith, matplotlib 2015) for ΔE; ColorBrewer RdBu for the
# hue shift (blue = negative, red = positive) and BrBG for the saturation ratio (brown = washed
# out, teal = over-saturated), both colour-blind safe (Brewer, colorbrewer2.org).
_CMAPS: dict[str, tuple[str, ...]] = {
    "inferno": ("#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"),
    "rdbu": ("#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"),
    "brbg": ("#8c510a", "#d8b365", "#f6e8c3", "#f5f5f5", "#c7eae5", "#5ab4ac", "#01665e"),
}

_STEP_RE = re.compile(r"(\d+)(?!.*\d)")


# ----------------------------------------------------------------------------------------------
# Inputs: results, gate reports, history
# ----------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """One evaluated checkpoint: the results dict and where it came from."""

    data: dict[str, Any]
    source: Path | None = None
    label: str = ""
    step: int | None = None
    gate: dict[str, Any] | None = None

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.data.get("provenance") or {})

    @property
    def sha(self) -> str | None:
        return self.provenance.get("checkpoint_sha256")


def _results_dict(obj: Any, what: str = "results") -> tuple[dict[str, Any], Path | None]:
    """A Results object, a schema-v1 dict or a path to a results JSON -> (dict, source path).

    Validated with :meth:`colorfid.evaluate.Results.from_dict` (ConfigError naming the key).
    """
    from .results import Results  # noqa: PLC0415

    source: Path | None = None
    if isinstance(obj, (str, os.PathLike)):
        source = Path(obj)
        return Results.load(source).to_dict(), source
    if isinstance(obj, Results):
        return obj.to_dict(), None
    if isinstance(obj, Mapping):
        return Results.from_dict(obj, source=what).to_dict(), None
    if hasattr(obj, "to_dict"):
        return Results.from_dict(obj.to_dict(), source=what).to_dict(), None
    raise UsageError(
        f"{what} must be a Results, a results dict or a path to a results JSON, not {type(obj).__name__}"
    )


def _step_of(checkpoint: str | None) -> int | None:
    """Training step from a checkpoint name: the last integer of its stem (net_g_20000.pth -> 20000)."""
    if not checkpoint:
        return None
    m = _STEP_RE.search(Path(str(checkpoint)).stem)
    return int(m.group(1)) if m else None


def _label_of(prov: Mapping[str, Any], fallback: str) -> str:
    ckpt = prov.get("checkpoint")
    if ckpt:
        return Path(str(ckpt)).stem
    return str(prov.get("model") or fallback)


def _as_run(obj: Any, index: int, what: str = "results") -> _Run:
    data, source = _results_dict(obj, what)
    prov = data.get("provenance") or {}
    return _Run(data, source, _label_of(prov, f"run {index + 1}"), _step_of(prov.get("checkpoint")))


def _as_base(obj: Any) -> _Run:
    """The baseline: Results (object, dict or path; values and cached outputs) or a gate
    baseline (``colorfid.gate.Baseline``, its dict or its JSON file; values only)."""
    data: Any = obj
    source: Path | None = None
    if isinstance(obj, (str, os.PathLike)):
        source = Path(obj)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"baseline file not found: {source}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"baseline file {source} is not readable JSON: {exc}") from None
    elif hasattr(obj, "to_dict") and hasattr(obj, "value"):  # colorfid.gate.Baseline
        data = obj.to_dict()
        source = getattr(obj, "path", None)
    if isinstance(data, Mapping) and data.get("schema") == "colorfid.baseline":
        from .gate import Baseline  # noqa: PLC0415

        b = Baseline.from_dict(data, source=str(source or "<baseline>"))
        prov = dict(b.provenance)
        sets = {name: {"aggregate": dict(sd.get("metrics") or {}), "images": []} for name, sd in b.sets.items()}
        pseudo = {"created": b.created, "provenance": prov, "protocol": {}, "sets": sets}
        return _Run(pseudo, source, _label_of(prov, source.stem if source else "baseline"), _step_of(prov.get("checkpoint")))
    run = _as_run(data, 0, "baseline")
    run.source = source or run.source
    return run


def _gate_dict(gate_report: Any) -> dict[str, Any] | None:
    """GateReport / its to_dict() / a list of rows -> {"passed": bool, "rows": [...]}."""
    if gate_report is None:
        return None
    d: Any = gate_report.to_dict() if hasattr(gate_report, "to_dict") else gate_report
    if isinstance(d, Mapping):
        rows = d.get("rows")
        passed = d.get("passed")
    elif isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
        rows, passed = d, None
    else:
        raise UsageError(f"gate_report must be a GateReport, its to_dict() or a list of rows, not {type(d).__name__}")
    if not isinstance(rows, Sequence):
        raise ConfigError("gate report: key 'rows' is missing or not a list")
    clean = []
    for i, r in enumerate(rows):
        r = r.to_dict() if hasattr(r, "to_dict") else dict(r)
        missing = [k for k in ("set", "metric", "verdict") if k not in r]
        if missing:
            raise ConfigError(f"gate report row {i}: missing key(s) {missing}; has {sorted(r)}")
        clean.append(r)
    if passed is None:
        passed = not any(str(r["verdict"]).startswith("fail") for r in clean)
    out = dict(d) if isinstance(d, Mapping) else {}
    out.update(passed=bool(passed), rows=clean)
    return out


def history_record(results: Any, gate_report: Any = None) -> dict[str, Any]:
    """One history line (plain JSON types) for a Results: provenance, aggregates, gate rows.

    Keys: ``schema`` (``"colorfid.history"``), ``schema_version`` (1), ``created`` (the results'
    creation time), ``recorded`` (now, ISO 8601 UTC), ``label``, ``step`` (from the checkpoint
    name, or null), ``provenance``, ``protocol``, ``sets`` ({set: {metric: {mean, median, p95,
    worst, n}}}) and ``gate`` ({"passed", "rows"} or null).
    """
    data, _ = _results_dict(results)
    prov = dict(data.get("provenance") or {})
    return {
        "schema": HISTORY_SCHEMA,
        "schema_version": HISTORY_SCHEMA_VERSION,
        "created": data.get("created"),
        "recorded": _now_iso(),
        "label": _label_of(prov, "run"),
        "step": _step_of(prov.get("checkpoint")),
        "provenance": prov,
        "protocol": data.get("protocol") or {},
        "sets": {name: dict(s.get("aggregate") or {}) for name, s in data["sets"].items()},
        "gate": _gate_dict(gate_report),
    }


def append_history(path: str | os.PathLike[str], results: Any, gate_report: Any = None) -> dict[str, Any]:
    """Append one JSON line for ``results`` (and its gate verdict) to the history file ``path``.

    The file is JSON lines (one :func:`history_record` per line, UTF-8), created with its parent
    folder when missing; each line is written with a single ``write`` call and flushed, so
    concurrent appenders never interleave partial lines. Returns the record written.
    """
    rec = history_record(results, gate_report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(rec, allow_nan=False, default=_json_default, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
    return rec


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history JSON-lines file (oldest first). Blank lines are skipped.

    Raises :class:`~colorfid.errors.ConfigError` naming the file and line for a missing file,
    a line that is not JSON, or a line of another schema/version.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"history file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"history file {path} is not readable: {exc}") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{no}: not a JSON line ({exc})") from None
        if not isinstance(rec, dict) or rec.get("schema") != HISTORY_SCHEMA:
            got = rec.get("schema") if isinstance(rec, dict) else type(rec).__name__
            raise ConfigError(f"{path}:{no}: 'schema' is {got!r}, expected {HISTORY_SCHEMA!r}")
        if rec.get("schema_version") != HISTORY_SCHEMA_VERSION:
            raise ConfigError(
                f"{path}:{no}: unsupported schema_version {rec.get('schema_version')!r} "
                f"(this colorfid reads {HISTORY_SCHEMA_VERSION})"
            )
        if not isinstance(rec.get("sets"), dict):
            raise ConfigError(f"{path}:{no}: key 'sets' is missing or not a mapping")
        out.append(rec)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------
# Numbers, directions, bounds
# ----------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """A finite float or None (null / NaN / inf / non-numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(v: Any, signed: bool = False) -> str:
    """Readable number: 3 decimals under 10, 2 under 100, 1 above; "—" for null/NaN, "∞" for inf."""
    f = _num(v)
    if f is None:
        if isinstance(v, float) and math.isinf(v):
            return ("+" if signed and v > 0 else "") + ("∞" if v > 0 else "−∞")
        return "—"
    a = abs(f)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        s = f"{f:+.2e}" if signed else f"{f:.2e}"
    else:
        digits = 1 if a >= 100 else 2 if a >= 10 else 3
        s = f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"
    return s.replace("-", "−")


def _metric_specs() -> dict[str, Any]:
    from . import metrics  # noqa: PLC0415

    return dict(metrics.METRICS)


def _direction(name: str, specs: Mapping[str, Any]) -> tuple[str, float | None]:
    spec = specs.get(name)
    if spec is None:
        return "lower", None
    return str(spec.direction), _num(getattr(spec, "target", None))


def _badness(value: Any, name: str, specs: Mapping[str, Any]) -> float | None:
    """How bad a value is under the metric's direction (larger = worse); None when undefined."""
    v = _num(value)
    if v is None:
        return None
    direction, target = _direction(name, specs)
    if direction == "higher":
        return -v
    if direction == "target":
        return abs(v - (1.0 if target is None else target))
    return v


def _direction_text(name: str, specs: Mapping[str, Any]) -> str:
    direction, target = _direction(name, specs)
    if direction == "target":
        return f"closer to {1.0 if target is None else target:g} is better"
    return f"{direction} is better"


def _delta_class(value: Any, baseline: Any, name: str, specs: Mapping[str, Any]) -> str:
    """'better' / 'worse' / 'same' / '' of value against baseline under the metric's direction."""
    b_new, b_old = _badness(value, name, specs), _badness(baseline, name, specs)
    if b_new is None or b_old is None:
        return ""
    scale = max(abs(_num(value) or 0.0), abs(_num(baseline) or 0.0), 1e-12)
    if abs(b_new - b_old) <= 1e-9 * scale:
        return "same"
    return "better" if b_new < b_old else "worse"


_FLOAT_RE = r"[-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _bound_lines(bound: Any) -> list[float]:
    """Numbers to draw as bound lines: {max}/{min}/{target, band} dicts, numbers or bound text.

    Text: ``"<= 10"`` / ``"≤ 10.0"`` -> [10]; ``"1.0 ± 0.10"`` / ``"[0.9, 1.1]"`` -> [0.9, 1.1]; text
    after the first ``(`` or ``;`` (regression notes) is ignored.
    """
    if bound is None:
        return []
    if isinstance(bound, Mapping):
        lines = [_num(bound.get(k)) for k in ("min", "max")]
        t, band = _num(bound.get("target")), _num(bound.get("band"))
        if t is not None and band is not None:
            lines += [t - band, t + band]
        return sorted({x for x in lines if x is not None})
    f = _num(bound)
    if f is not None:
        return [f]
    text = re.split(r"[(;]", str(bound))[0]
    nums = [float(x.replace("−", "-")) for x in re.findall(_FLOAT_RE, text)]
    if ("±" in text or "+/-" in text or "+-" in text) and len(nums) >= 2:
        return [nums[0] - abs(nums[1]), nums[0] + abs(nums[1])]
    return nums[:2]


# ----------------------------------------------------------------------------------------------
# Images: loading, maps, colour maps, encoding
# ----------------------------------------------------------------------------------------------


def _hex_rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def _lut(name: str) -> np.ndarray:
    """256 x 3 uint8 table interpolated linearly (in encoded sRGB) between the map's anchors."""
    anchors = np.array([_hex_rgb(h) for h in _CMAPS[name]], dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _apply_cmap(u: np.ndarray, name: str) -> np.ndarray:
    """u in [0, 1] (H, W) -> (H, W, 3) uint8 through the named colour map (NaN -> 0)."""
    idx = np.nan_to_num(np.clip(u, 0.0, 1.0) * 255.0, nan=0.0).round().astype(np.intp)
    return _lut(name)[idx]


def _to_uint8(t: Any) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8."""
    a = t.detach().to("cpu").float().clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return (a * 255.0 + 0.5).astype(np.uint8)


def _context_grey(L: np.ndarray) -> np.ndarray:
    """Darkened grey of the GT's lightness, drawn where a map is undefined (outside its mask)."""
    g = (40.0 + 0.9 * np.clip(L, 0.0, 100.0)).astype(np.uint8)  # 40..130 of 255: clearly "off"
    return np.repeat(g[..., None], 3, axis=-1)


@dataclass
class _Maps:
    de00: np.ndarray
    hue: np.ndarray
    sat: np.ndarray
    hue_pixels: int
    sat_pixels: int
    de00_max: float


def _compute_maps(pred: Any, gt: Any, hue_floor: float) -> _Maps:
    """The three maps of one image pair, as RGB uint8 arrays at full resolution."""
    import torch  # noqa: PLC0415

    from . import color, metrics  # noqa: PLC0415

    from . import difference  # noqa: PLC0415

    pred = pred.float().clamp(0.0, 1.0)
    gt = gt.float().clamp(0.0, 1.0)
    h, w = gt.shape[-2:]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("de", "L", "C", "dh", "sp", "sg")}
    rows = max(1, _MAP_CHUNK_PIXELS // max(1, w))  # bounded memory on large images; exact
    with torch.no_grad():
        for y0 in range(0, h, rows):
            p, g = pred[:, y0 : y0 + rows], gt[:, y0 : y0 + rows]
            lab_p, lab_g = color.srgb_to_lab(p), color.srgb_to_lab(g)
            lch_g = color.lab_to_lch(lab_g)
            parts["de"].append(difference.delta_e_2000(lab_p, lab_g).numpy())
            parts["L"].append(lch_g[0].numpy())
            parts["C"].append(lch_g[1].numpy())
            parts["dh"].append(metrics.hue_angle_delta(lab_p, lab_g).numpy())  # hue_shift's own Δh
            parts["sp"].append(color.hsv_saturation(p).numpy())
            parts["sg"].append(color.hsv_saturation(g).numpy())
    de, L_g, C_g, dh, s_p, s_g = (np.concatenate(parts[k], axis=0) for k in ("de", "L", "C", "dh", "sp", "sg"))

    lo, hi = DE00_SCALE
    de_rgb = _apply_cmap((de - lo) / (hi - lo), "inferno")

    grey = _context_grey(L_g)
    hue_mask = C_g >= hue_floor
    lo, hi = HUE_SCALE
    hue_rgb = np.where(hue_mask[..., None], _apply_cmap((dh - lo) / (hi - lo), "rdbu"), grey)

    sat_mask = s_g >= SAT_MAP_MIN_GT
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sat_mask, s_p / np.where(sat_mask, s_g, 1.0), 1.0)
        lr = np.log2(np.maximum(ratio, 1e-6))
    lo, hi = (math.log2(x) for x in SAT_SCALE)
    sat_rgb = np.where(sat_mask[..., None], _apply_cmap((lr - lo) / (hi - lo), "brbg"), grey)
    finite = de[np.isfinite(de)]
    return _Maps(
        de_rgb, hue_rgb, sat_rgb, int(hue_mask.sum()), int(sat_mask.sum()), float(finite.max()) if finite.size else 0.0
    )


def _downscale(a: np.ndarray, long_edge: int) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415

    h, w = a.shape[:2]
    if max(h, w) <= long_edge:
        return a
    im = Image.fromarray(a)
    im.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _few_colours(a: np.ndarray, limit: int = 2048) -> bool:
    """True when the image has at most ``limit`` distinct colours (sampled on every 2nd pixel):
    flat charts and colour-mapped maps, where a PNG can beat a JPEG."""
    s = a[::2, ::2].astype(np.uint32)
    packed = (s[..., 0] << 16) | (s[..., 1] << 8) | s[..., 2]
    return np.unique(packed).size <= limit


def _data_uri(a: np.ndarray, long_edge: int, quality: int, *, sharp: bool = False) -> tuple[str, int, int]:
    """Encode (H, W, 3) uint8 after shrinking to ``long_edge``; return (data URI, width, height).

    JPEG at ``quality`` (4:4:4 chroma for ``sharp`` images such as the maps, whose colours carry
    values), or a PNG when the image has few colours and the PNG is smaller.
    """
    from PIL import Image  # noqa: PLC0415

    a = np.ascontiguousarray(_downscale(a, long_edge))
    im = Image.fromarray(a)
    jpg = _bytesio.BytesIO()
    im.save(jpg, format="JPEG", quality=quality, optimize=True, progressive=True, subsampling=0 if sharp else 2)
    best, mime = jpg.getvalue(), "image/jpeg"
    if _few_colours(a):
        png = _bytesio.BytesIO()
        im.save(png, format="PNG", optimize=True)
        if len(png.getvalue()) < len(best):
            best, mime = png.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(best).decode('ascii')}", a.shape[1], a.shape[0]


def _read(path: Path) -> Any:
    from .io import read_image  # noqa: PLC0415

    return read_image(path)


# ----------------------------------------------------------------------------------------------
# SVG: colour bars and trend plots
# ----------------------------------------------------------------------------------------------


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _esc(s: Any) -> str:
    return (
        str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _colorbar_svg(cmap: str, ticks: Sequence[tuple[float, str]], unit: str, title: str, ids: _Ids) -> str:
    """A horizontal colour bar; ticks are (position in [0, 1], label)."""
    gid = ids("cb")
    stops = "".join(
        f'<stop offset="{i / (len(_CMAPS[cmap]) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(_CMAPS[cmap])
    )
    w, x0, x1 = 240.0, 8.0, 232.0
    parts = [
        f'<svg class="cbar" viewBox="0 0 {w:.0f} 38" role="img" aria-label="{_esc(title)}">',
        f'<defs><linearGradient id="{gid}">{stops}</linearGradient></defs>',
        f'<rect x="{x0}" y="2" width="{x1 - x0}" height="12" fill="url(#{gid})" stroke="#555" stroke-width="0.5"/>',
    ]
    for pos, lab in ticks:
        x = x0 + pos * (x1 - x0)
        anchor = "start" if pos <= 0.001 else "end" if pos >= 0.999 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="18" stroke="#333" stroke-width="0.8"/>')
        parts.append(f'<text x="{x:.1f}" y="27" text-anchor="{anchor}">{_esc(lab)}</text>')
    parts.append(f'<text x="{w / 2:.0f}" y="37" text-anchor="middle" class="unit">{_esc(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _colorbar(key: str, ids: _Ids) -> str:
    """The colour bar of map ``key`` (de00 | hue | sat) with a fresh gradient id."""
    return _colorbars(ids, only=key)[key]


def _colorbars(ids: _Ids, only: str | None = None) -> dict[str, str]:
    lo, hi = DE00_SCALE
    de_ticks = [((v - lo) / (hi - lo), ("≥ " if v == hi else "") + f"{v:g}") for v in (0, 2, 5, 10, 15, 20)]
    lo, hi = HUE_SCALE
    hue_ticks = [((v - lo) / (hi - lo), f"{v:+g}°" if v else "0°") for v in (-30, -15, 0, 15, 30)]
    llo, lhi = (math.log2(x) for x in SAT_SCALE)
    sat_ticks = [((math.log2(v) - llo) / (lhi - llo), f"×{v:g}") for v in (0.5, 0.71, 1.0, 1.41, 2.0)]
    specs = {
        "de00": ("inferno", de_ticks, "ΔE00 (CIEDE2000)", "ΔE2000 colour scale, 0 to 20 ΔE00"),
        "hue": ("rdbu", hue_ticks, "hue shift, degrees (output − GT)", "Hue-shift colour scale, −30° to +30°"),
        "sat": ("brbg", sat_ticks, "saturation ratio S(output) / S(GT), HSV", "Saturation-ratio colour scale, ×0.5 to ×2"),
    }
    return {k: _colorbar_svg(*v, ids) for k, v in specs.items() if only is None or k == only}


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + 1e-9 * span:
        out.append(round(v, 12))
        v += step
    return out


def _trend_svg(
    title: str,
    xs: Sequence[float],
    xlabels: Sequence[str],
    ys: Sequence[float | None],
    bounds: Sequence[float],
    baseline: float | None,
    badness_dir: str,
) -> str:
    """Inline SVG line plot of one set/metric across checkpoints; bound (red dashed), baseline (grey)."""
    W, H = 300.0, 168.0
    L, R, T, B = 46.0, 10.0, 10.0, 40.0
    vals = [y for y in ys if y is not None]
    extra = [b for b in bounds] + ([baseline] if baseline is not None else [])
    allv = vals + extra
    if not allv:
        return ""
    lo, hi = min(allv), max(allv)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    xmin, xmax = min(xs), max(xs)
    if xmax == xmin:
        xmin, xmax = xmin - 1, xmax + 1

    def px(x: float) -> float:
        return L + (x - xmin) / (xmax - xmin) * (W - L - R)

    def py(y: float) -> float:
        return T + (hi - y) / (hi - lo) * (H - T - B)

    desc = "; ".join(f"{xl}: {_fmt(y)}" for xl, y in zip(xlabels, ys))
    if bounds:
        desc += "; bound " + " / ".join(_fmt(b) for b in bounds)
    if baseline is not None:
        desc += f"; baseline {_fmt(baseline)}"
    p = [
        f'<svg class="trend" viewBox="0 0 {W:.0f} {H:.0f}" role="img" aria-label="{_esc(title)}: {_esc(desc)}">',
        f"<title>{_esc(title)}</title>",
        f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="plotbg"/>',
    ]
    ticks = _nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    for t in ticks:
        y = py(t)
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        p.append(f'<text x="{L - 4}" y="{y + 3:.1f}" text-anchor="end">{_esc(f"{t:.{decimals}f}".replace("-", "−"))}</text>')
    for x, xl in zip(xs, xlabels):
        p.append(f'<text x="{px(x):.1f}" y="{H - B + 13:.1f}" text-anchor="middle">{_esc(xl)}</text>')
    for b in bounds:
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{py(b):.1f}" y2="{py(b):.1f}" class="bound"/>')
    if baseline is not None:
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{py(baseline):.1f}" y2="{py(baseline):.1f}" class="base"/>')
    segs: list[list[str]] = [[]]
    for x, y in zip(xs, ys):
        if y is None:
            segs.append([])
        else:
            segs[-1].append(f"{px(x):.1f},{py(y):.1f}")
    for s in segs:
        if len(s) > 1:
            p.append(f'<polyline points="{" ".join(s)}" class="line"/>')
    for x, y in zip(xs, ys):
        if y is not None:
            p.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" class="pt"><title>{_esc(_fmt(y))}</title></circle>')
    legend_y = H - 8
    p.append(f'<line x1="{L}" x2="{L + 16}" y1="{legend_y - 3}" y2="{legend_y - 3}" class="bound"/>')
    p.append(f'<text x="{L + 20}" y="{legend_y}">bound</text>')
    p.append(f'<line x1="{L + 70}" x2="{L + 86}" y1="{legend_y - 3}" y2="{legend_y - 3}" class="base"/>')
    p.append(f'<text x="{L + 90}" y="{legend_y}">baseline</text>')
    p.append(f'<text x="{W - R}" y="{legend_y}" text-anchor="end" class="dir">{_esc(badness_dir)}</text>')
    p.append("</svg>")
    return "".join(p)


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def _resolve(p: Any, run: _Run | None) -> Path | None:
    if not p:
        return None
    path = Path(str(p))
    if not path.is_absolute() and run is not None and run.source is not None:
        cand = run.source.parent / path
        if cand.exists():
            return cand
    return path


def _agg_stat(data: Mapping[str, Any], set_name: str, metric: str, stat: str) -> float | None:
    s = (data.get("sets") or {}).get(set_name) or {}
    a = (s.get("aggregate") or {}).get(metric) or {}
    return _num(a.get(stat)) if isinstance(a, Mapping) else _num(a)


@dataclass
class _Pic:
    key: str
    label: str
    arr: np.ndarray | None = None
    note: str = ""
    long_edge: int = SMALL_LONG_EDGE
    full: str | None = None  # relative href of a full-size side file
    uri: str = ""
    w: int = 0
    h: int = 0


@dataclass
class _Card:
    set_name: str
    name: str
    rank: int
    value: float | None
    metrics: dict[str, Any]
    flags: list[tuple[str, str]] = field(default_factory=list)
    pics: dict[str, _Pic] = field(default_factory=dict)
    maps: dict[str, _Pic] = field(default_factory=dict)
    map_notes: dict[str, str] = field(default_factory=dict)
    problem: str = ""


def _health_flags(m: Mapping[str, Any], protocol: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(severity, text) flags from an image's stored health metrics (``image_metrics`` made them).

    * ``nonfinite_count > 0`` -> critical; ``out_of_range_frac > 0`` -> warn (values the model
      produced outside [0, 1] before clamping).
    * ``grey_collapse`` (share of the GT's coloured pixels rendered grey) >=
      :data:`GREY_COLLAPSE_CRITICAL` -> critical, >= :data:`GREY_COLLAPSE_WARN` -> warn.
    * low colour: ``mean_saturation`` under the protocol's ``low_color_critical`` / ``low_color_min``
      (:class:`colorfid.metrics.MetricProtocol`), flagged only when the GT has high-chroma pixels
      (``hc_fraction > 0``), so a neutral scene is not blamed for being neutral.
    """
    flags: list[tuple[str, str]] = []
    nf = _num(m.get("nonfinite_count"))
    if nf:
        flags.append(("critical", f"{int(nf)} non-finite values"))
    oor = _num(m.get("out_of_range_frac"))
    if oor:
        flags.append(("warn", f"{oor:.2%} of values outside [0, 1]"))
    gc = _num(m.get("grey_collapse"))
    if gc is not None and gc >= GREY_COLLAPSE_WARN:
        sev = "critical" if gc >= GREY_COLLAPSE_CRITICAL else "warn"
        flags.append((sev, f"grey collapse: {gc:.0%} of coloured GT pixels rendered grey"))
    ms, hc = _num(m.get("mean_saturation")), _num(m.get("hc_fraction"))
    crit = _num(protocol.get("low_color_critical"))
    low = _num(protocol.get("low_color_min"))
    if ms is not None and hc:
        if crit is not None and ms < crit:
            flags.append(("critical", f"very low colour: mean saturation {ms:.3f} < {crit:g}"))
        elif low is not None and ms < low:
            flags.append(("warn", f"low colour: mean saturation {ms:.3f} < {low:g}"))
    return flags


def _worst(images: Sequence[Mapping[str, Any]], metric: str, k: int, specs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    def key(img: Mapping[str, Any]) -> tuple[int, float]:
        b = _badness((img.get("metrics") or {}).get(metric), metric, specs)
        return (1, 0.0) if b is None else (0, -b)

    return sorted(images, key=key)[:k]


def _build_cards(
    run: _Run,
    base: _Run | None,
    set_name: str,
    metric: str,
    worst_k: int,
    specs: Mapping[str, Any],
    protocol: Mapping[str, Any],
    full_dir: Path | None,
    out_dir: Path,
) -> list[_Card]:
    s = run.data["sets"][set_name]
    images = list(s.get("images") or [])
    base_imgs: dict[str, Mapping[str, Any]] = {}
    if base is not None:
        for img in ((base.data["sets"].get(set_name) or {}).get("images") or []):
            base_imgs[str(img.get("name"))] = img
    hue_floor = _num(protocol.get("hue_chroma_floor"))
    hue_floor = 10.0 if hue_floor is None else hue_floor
    cards = []
    for rank, img in enumerate(_worst(images, metric, worst_k, specs), 1):
        m = dict(img.get("metrics") or {})
        card = _Card(set_name, str(img.get("name")), rank, _num(m.get(metric)), m, _health_flags(m, protocol))
        paths = {
            "lq": _resolve(img.get("lq"), run),
            "output": _resolve(img.get("output"), run),
            "baseline": _resolve((base_imgs.get(card.name) or {}).get("output"), base),
            "gt": _resolve(img.get("gt"), run),
        }
        labels = {"lq": "LQ (input)", "output": "output", "baseline": "baseline output", "gt": "GT (target)"}
        tensors: dict[str, Any] = {}
        for key in ("lq", "output", "baseline", "gt"):
            pic = _Pic(key, labels[key], long_edge=OUTPUT_LONG_EDGE if key in ("output", "gt") else SMALL_LONG_EDGE)
            p = paths[key]
            if p is None:
                pic.note = {
                    "lq": "no LQ (prediction set)",
                    "output": "output not cached",
                    "baseline": "no baseline output cached",
                    "gt": "no GT path",
                }[key]
            else:
                try:
                    t = _read(p)
                    tensors[key] = t
                    pic.arr = _downscale(_to_uint8(t), OUTPUT_LONG_EDGE)  # keep only what is embedded
                    if full_dir is not None:
                        pic.full = _side_copy(p, full_dir / _slug(set_name) / f"{_slug(card.name)}_{key}{p.suffix}", out_dir)
                except (ImageReadError, OSError) as exc:
                    pic.note = f"unreadable: {exc}"
            if key == "baseline" and p is None and not base_imgs:
                continue  # no baseline outputs for this set (none given, or a values-only baseline)
            card.pics[key] = pic
        pred, gt = tensors.get("output"), tensors.get("gt")
        if pred is not None and gt is not None and tuple(pred.shape) == tuple(gt.shape):
            maps = _compute_maps(pred, gt, hue_floor)
            for key, label, arr in (
                ("de00", "ΔE2000 map", maps.de00),
                ("hue", "hue shift (chromatic mask)", maps.hue),
                ("sat", "saturation ratio", maps.sat),
            ):
                pic = _Pic(key, label, _downscale(arr, OUTPUT_LONG_EDGE))
                if full_dir is not None:
                    pic.full = _side_png(arr, full_dir / _slug(set_name) / f"{_slug(card.name)}_{key}.png", out_dir)
                card.maps[key] = pic
            npx = pred.shape[-1] * pred.shape[-2]
            card.map_notes = {
                "de00": f"max {maps.de00_max:.1f} ΔE00",
                "hue": f"{maps.hue_pixels / npx:.0%} of pixels chromatic (GT C* ≥ {hue_floor:g})",
                "sat": f"{maps.sat_pixels / npx:.0%} of pixels with GT S ≥ {SAT_MAP_MIN_GT:g}",
            }
        elif pred is not None and gt is not None:
            card.problem = f"output {tuple(pred.shape)} and GT {tuple(gt.shape)} differ in shape: no maps"
        else:
            card.problem = "maps need both the cached output and the GT"
        cards.append(card)
    return cards


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _side_copy(src: Path, dst: Path, out_dir: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(out_dir).as_posix()


def _side_png(arr: np.ndarray, dst: Path, out_dir: Path) -> str:
    from PIL import Image  # noqa: PLC0415

    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(dst, format="PNG", optimize=True)
    return dst.relative_to(out_dir).as_posix()


def _encode_cards(cards: Iterable[_Card], out_edge: int, small_edge: int, quality: int) -> None:
    for card in cards:
        for pic in list(card.pics.values()) + list(card.maps.values()):
            if pic.arr is None:
                pic.uri = ""
                continue
            edge = out_edge if pic.long_edge == OUTPUT_LONG_EDGE else small_edge
            pic.uri, pic.w, pic.h = _data_uri(pic.arr, edge, quality, sharp=pic.key in ("de00", "hue", "sat"))


def _matrix(
    run: _Run, base: _Run | None, gate: dict[str, Any] | None, specs: Mapping[str, Any]
) -> dict[str, Any]:
    """Set x metric matrix: rows = sets (worst first), columns = metrics, cells with verdicts."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    metrics_order: list[str] = []
    sets_order: list[str] = []
    if gate is not None:
        for r in gate["rows"]:
            sname, mname = str(r["set"]), str(r["metric"])
            if mname not in metrics_order:
                metrics_order.append(mname)
            if sname not in sets_order:
                sets_order.append(sname)
            value, baseline = r.get("value"), r.get("baseline")
            delta = _num(r.get("delta"))
            if delta is None and _num(value) is not None and _num(baseline) is not None:
                delta = _num(value) - _num(baseline)  # type: ignore[operator]
            verdict = str(r.get("verdict"))
            cells[(sname, mname)] = {
                "value": _fmt(value),
                "stat": r.get("stat") or "",
                "bound": "" if r.get("bound") in (None, "") else str(r.get("bound")),
                "baseline": _fmt(baseline) if _num(baseline) is not None else "",
                "delta": _fmt(delta, signed=True) if delta is not None else "",
                "delta_class": _delta_class(value, baseline, mname, specs),
                "verdict": verdict,
                "verdict_text": _VERDICT_TEXT.get(verdict, verdict),
                "message": str(r.get("note") or r.get("message") or ""),
                "rank": _VERDICT_RANK.get(verdict, 2),
            }
    else:
        present = set()
        for s in run.data["sets"].values():
            present.update((s.get("aggregate") or {}).keys())
        metrics_order = [m for m in DEFAULT_MATRIX_METRICS if m in present]
        sets_order = list(run.data["sets"].keys())
        for sname in sets_order:
            for mname in metrics_order:
                value = _agg_stat(run.data, sname, mname, "mean")
                baseline = _agg_stat(base.data, sname, mname, "mean") if base is not None else None
                delta = value - baseline if value is not None and baseline is not None else None
                cells[(sname, mname)] = {
                    "value": _fmt(value),
                    "stat": "mean",
                    "bound": "",
                    "baseline": _fmt(baseline) if baseline is not None else "",
                    "delta": _fmt(delta, signed=True) if delta is not None else "",
                    "delta_class": _delta_class(value, baseline, mname, specs),
                    "verdict": "",
                    "verdict_text": "",
                    "message": "",
                    "rank": 3,
                }

    def set_key(sname: str) -> tuple[int, int, int, str]:
        ranks = [cells[(sname, m)]["rank"] for m in metrics_order if (sname, m) in cells]
        fails = sum(1 for r in ranks if r <= 1)
        worse = sum(1 for m in metrics_order if cells.get((sname, m), {}).get("delta_class") == "worse")
        return (min(ranks, default=3), -fails, -worse, sname)

    sets_order.sort(key=set_key)
    cols = []
    for m in metrics_order:
        spec = specs.get(m)
        cols.append(
            {
                "name": m,
                "unit": getattr(spec, "unit", "") if spec is not None else "",
                "description": getattr(spec, "description", "") if spec is not None else "",
                "direction": _direction_text(m, specs),
            }
        )
    rows = [{"set": s, "cells": [cells.get((s, m)) for m in metrics_order]} for s in sets_order]
    return {"cols": cols, "rows": rows, "gated": gate is not None}


@dataclass
class _Point:
    label: str
    step: int | None
    sets: dict[str, Any]
    gate: dict[str, Any] | None
    sha: str | None
    created: str | None


def _trend_points(runs: Sequence[_Run], history: Sequence[Mapping[str, Any]]) -> list[_Point]:
    pts = [
        _Point(
            str(h.get("label") or f"#{i + 1}"),
            h.get("step") if isinstance(h.get("step"), int) else None,
            dict(h.get("sets") or {}),
            h.get("gate"),
            (h.get("provenance") or {}).get("checkpoint_sha256"),
            h.get("created"),
        )
        for i, h in enumerate(history)
    ]
    seen = {(p.sha, p.created) for p in pts}
    for r in runs:
        if (r.sha, r.data.get("created")) in seen and r.sha is not None:
            continue
        sets = {n: dict(s.get("aggregate") or {}) for n, s in r.data["sets"].items()}
        pts.append(_Point(r.label, r.step, sets, r.gate, r.sha, r.data.get("created")))
    return pts


def _trends(
    points: Sequence[_Point],
    run: _Run,
    base: _Run | None,
    gate: dict[str, Any] | None,
    matrix: Mapping[str, Any],
    specs: Mapping[str, Any],
) -> list[dict[str, Any]]:
    if len(points) < 2:
        return []
    steps = [p.step for p in points]
    if all(s is not None for s in steps) and all(b > a for a, b in zip(steps, steps[1:])):  # type: ignore[operator]
        xs = [float(s) for s in steps]  # type: ignore[arg-type]
        xlabels = [_short_step(int(s)) for s in steps]  # type: ignore[arg-type]
    else:
        xs = [float(i) for i in range(len(points))]
        xlabels = [p.label if len(p.label) <= 10 else p.label[:9] + "…" for p in points]
    rows_by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    if gate is not None:
        rows_by_key = {(str(r["set"]), str(r["metric"])): r for r in gate["rows"]}
    metric_names = [c["name"] for c in matrix["cols"]]
    out = []
    for sname in [r["set"] for r in matrix["rows"]]:
        plots = []
        for m in metric_names:
            row = rows_by_key.get((sname, m))
            stat = str((row or {}).get("stat") or "mean")
            ys = []
            for p in points:
                a = (p.sets.get(sname) or {}).get(m)
                ys.append(_num(a.get(stat)) if isinstance(a, Mapping) else _num(a))
            if all(y is None for y in ys):
                continue
            bounds = _bound_lines((row or {}).get("limits") or (row or {}).get("bound"))
            baseline = _num((row or {}).get("baseline"))
            if baseline is None and base is not None:
                baseline = _agg_stat(base.data, sname, m, stat)
            direction, target = _direction(m, specs)
            dtext = {"lower": "↓ better", "higher": "↑ better"}.get(direction, f"→ {target if target is not None else 1:g} best")
            title = f"{sname} · {m} ({stat})"
            plots.append({"metric": m, "stat": stat, "svg": _trend_svg(title, xs, xlabels, ys, bounds, baseline, dtext)})
        if plots:
            out.append({"set": sname, "plots": plots})
    return out


def _short_step(s: int) -> str:
    if s >= 1000 and s % 1000 == 0:
        return f"{s // 1000}k"
    return str(s)


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    """The jinja2 environment (templates ship in the package: colorfid/templates/)."""
    import jinja2  # noqa: PLC0415

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("colorfid", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2", "html.j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["slug"] = _slug
    return env


def _render(ctx: Mapping[str, Any]) -> str:
    import markupsafe  # noqa: PLC0415 - a jinja2 dependency

    ctx = dict(ctx)
    ids = _Ids()
    ctx["colorbar"] = lambda key: markupsafe.Markup(_colorbar(key, ids))
    for t in ctx["trends"]:
        for p in t["plots"]:
            p["svg"] = markupsafe.Markup(p["svg"])
    return _env().get_template("report.html.j2").render(**ctx)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename (readers never see half a file)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _checkpoint_rows(runs: Sequence[_Run]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        prov = r.provenance
        out.append(
            {
                "label": r.label,
                "checkpoint": prov.get("checkpoint") or "",
                "sha256": prov.get("checkpoint_sha256") or "",
                "model": prov.get("model") or "",
                "created": r.data.get("created") or "",
                "passed": None if r.gate is None else r.gate["passed"],
            }
        )
    return out


def write_report(
    results: Any,
    out_dir: str | os.PathLike[str],
    *,
    gate_report: Any = None,
    baseline: Any = None,
    history: Any = None,
    worst_k: int = 3,
    metric: str = "de00_p95",
    full_size: bool = False,
) -> Path:
    """Write the HTML report of ``results`` into ``out_dir`` and return the path of ``index.html``.

    Parameters
    ----------
    results:
        One ``colorfid.evaluate.Results`` (or its schema-v1 dict, or the path of a saved results
        JSON), or a list of them for several checkpoints, oldest first. The last one is the
        checkpoint shown in detail; all of them feed the trend plots.
    out_dir:
        Folder to write; created if missing. Receives ``index.html``, ``results.json`` (the
        detailed checkpoint's results, linked from the header), ``gate.json`` when a gate report is
        given, and with ``full_size=True`` a ``full/`` folder of full-resolution images and maps.
    gate_report:
        ``colorfid.gate.GateReport`` (or its ``to_dict()``) of the detailed checkpoint: fills the
        matrix's bounds and verdicts and the overall verdict. Without it the matrix shows the
        mean of :data:`DEFAULT_MATRIX_METRICS` and no verdicts.
    baseline:
        Baseline Results (object, dict or path): baseline values and cached baseline outputs
        (a column "baseline output" next to the output); or a gate baseline
        (``colorfid.gate.Baseline``, its dict or its JSON file): values only. With a gate report
        the matrix takes the baseline values from the gate's rows.
    history:
        A history JSON-lines path (see :func:`append_history`) or a list of its records; its
        checkpoints come first in the trends, followed by ``results`` not already recorded.
    worst_k:
        Images shown per set (>= 0), the worst by ``metric``.
    metric:
        A name from ``colorfid.metrics.METRICS``; "worst" follows its direction (lower/higher/
        target). Unknown names raise :class:`~colorfid.errors.UnknownNameError`.
    full_size:
        Also write full-resolution side files and link each thumbnail to its file.

    The report's size is kept under :data:`MAX_REPORT_BYTES` by re-encoding the images smaller
    (down to 512 px long edge); if it is still larger a :class:`~colorfid.errors.ColorfidWarning`
    says so.
    """
    from . import metrics as _metrics  # noqa: PLC0415

    if isinstance(worst_k, bool) or not isinstance(worst_k, int) or worst_k < 0:
        raise UsageError(f"worst_k must be an integer >= 0, got {worst_k!r}")
    _metrics.get_metric(metric)  # UnknownNameError listing the known names
    specs = _metric_specs()

    items = list(results) if isinstance(results, (list, tuple)) else [results]
    if not items:
        raise UsageError("write_report: results is an empty list; give at least one Results")
    runs = [_as_run(r, i) for i, r in enumerate(items)]
    run = runs[-1]
    gate = _gate_dict(gate_report)
    run.gate = gate
    base = _as_base(baseline) if baseline is not None else None
    if history is None:
        hist: list[dict[str, Any]] = []
    elif isinstance(history, (str, os.PathLike)):
        hist = load_history(history)
    else:
        hist = [dict(h) for h in history]
    if gate is not None:
        unknown = sorted({str(r["set"]) for r in gate["rows"]} - set(run.data["sets"]))
        if unknown:
            raise ConfigError(
                f"gate report names set(s) {unknown} that the results do not have; "
                f"results sets: {sorted(run.data['sets'])}"
            )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_dir = out / "full" if full_size else None
    if full_dir is not None and full_dir.exists():
        shutil.rmtree(full_dir)

    protocol = dict(run.data.get("protocol") or {})
    matrix = _matrix(run, base, gate, specs)
    set_names = [r["set"] for r in matrix["rows"]] + [s for s in run.data["sets"] if s not in {r["set"] for r in matrix["rows"]}]

    sections = []
    all_cards: list[_Card] = []
    for sname in set_names:
        s = run.data["sets"][sname]
        set_protocol = dict(s.get("protocol") or protocol)  # the set's effective protocol
        cards = _build_cards(run, base, sname, metric, worst_k, specs, set_protocol, full_dir, out)
        all_cards += cards
        images = list(s.get("images") or [])
        table_cols = [m for m in TABLE_METRICS if any(m in (im.get("metrics") or {}) for im in images)]
        if metric not in table_cols and any(metric in (im.get("metrics") or {}) for im in images):
            table_cols.insert(0, metric)
        rows = []
        for im in _worst(images, metric, len(images), specs):
            m = im.get("metrics") or {}
            rows.append(
                {
                    "name": str(im.get("name")),
                    "size": f"{im.get('width', '?')}×{im.get('height', '?')}",
                    "cells": [_fmt(m.get(c)) for c in table_cols],
                    "flags": _health_flags(m, set_protocol),
                }
            )
        agg = (s.get("aggregate") or {}).get(metric) or {}
        sections.append(
            {
                "name": sname,
                "id": "set-" + _slug(sname),
                "description": s.get("description") or "",
                "path": s.get("path") or "",
                "kind": s.get("kind") or "",
                "n": len(images),
                "agg": {k: _fmt(agg.get(k)) for k in ("mean", "median", "p95", "worst")} if isinstance(agg, Mapping) else {},
                "cards": cards,
                "table_cols": table_cols,
                "table_rows": rows,
                "flag_count": sum(1 for r in rows if r["flags"]),
                "overrides": [(k, v) for k, v in set_protocol.items() if protocol.get(k) != v],
            }
        )

    points = _trend_points(runs, hist)
    trends = _trends(points, run, base, gate, matrix, specs)

    # Side files: the results (and gate) JSON the header links to.
    (out / "results.json").write_text(
        json.dumps(run.data, indent=1, allow_nan=False, default=_json_default, ensure_ascii=False), encoding="utf-8"
    )
    if gate is not None:
        (out / "gate.json").write_text(
            json.dumps(gate, indent=1, allow_nan=False, default=_json_default, ensure_ascii=False), encoding="utf-8"
        )
    else:
        (out / "gate.json").unlink(missing_ok=True)  # a previous report's verdict is not this one's

    prov = run.provenance
    base_prov = base.provenance if base is not None else {}
    ctx = {
        "title": f"colorfid report · {run.label}",
        "version": __version__,
        "generated": _now_iso(),
        "run": {"label": run.label, "created": run.data.get("created") or ""},
        "checkpoints": _checkpoint_rows(runs),
        "provenance": [(k, "—" if v is None or v == "" else str(v)) for k, v in prov.items()],
        "protocol": [(k, "—" if v is None or v == "" else str(v)) for k, v in protocol.items()],
        "baseline": None
        if base is None
        else {
            "label": base.label,
            "sha256": base_prov.get("checkpoint_sha256") or "",
            "created": base.data.get("created") or "",
            "source": str(base.source) if base.source else "",
        },
        "verdict": None if gate is None else ("pass" if gate["passed"] else "fail"),
        "fail_count": 0 if gate is None else sum(1 for r in gate["rows"] if str(r["verdict"]).startswith("fail")),
        "row_count": 0 if gate is None else len(gate["rows"]),
        "gate_json": "gate.json" if gate is not None else "",
        "metric": metric,
        "metric_direction": _direction_text(metric, specs),
        "worst_k": worst_k,
        "matrix": matrix,
        "sections": sections,
        "trends": trends,
        "trend_points": len(points),
        "scales": {"de00": DE00_SCALE, "hue": HUE_SCALE, "sat": SAT_SCALE, "sat_min": SAT_MAP_MIN_GT},
        "health_total": sum(s["flag_count"] for s in sections),
    }

    index = out / "index.html"
    text = ""
    for i, (out_edge, small_edge, quality) in enumerate(_ENCODE_LADDER):
        _encode_cards(all_cards, out_edge, small_edge, quality)
        text = _render(ctx)
        if len(text.encode("utf-8")) <= MAX_REPORT_BYTES:
            break
    size = len(text.encode("utf-8"))
    if size > MAX_REPORT_BYTES:
        warnings.warn(
            f"report {index} is {size / 1e6:.1f} MB, over the {MAX_REPORT_BYTES / 1e6:.0f} MB aim even with "
            f"images at {_ENCODE_LADDER[-1][0]} px; lower worst_k or the number of sets",
            ColorfidWarning,
            stacklevel=2,
        )
    _atomic_write_text(index, text)
    return index


# ----------------------------------------------------------------------------------------------
# Command line (``colorfid report``; the parser lives in colorfid.cli)
# ----------------------------------------------------------------------------------------------


def run_cli(args: argparse.Namespace) -> int:
    """``colorfid report``: saved results and/or checkpoints -> one report (exit 0; 2 on usage errors).

    * ``results`` (JSON files, oldest first) and ``checkpoint`` (evaluated here with
      :func:`colorfid.evaluate.evaluate` on ``sets``, their results saved under
      ``<out>/checkpoints/``) together form the checkpoints of the report; the last is detailed.
    * Gate: ``--config`` names a thresholds file; otherwise the one
      :func:`colorfid.gate.find_thresholds` finds is used when it applies to these results
      (a warning says why not otherwise); ``--no-gate`` switches the verdicts off.
    * ``--baseline``: a results JSON (values and baseline outputs) or a gate baseline JSON.
    * ``--history``: read for the trends; with ``--append-history`` the checkpoints of this
      run are appended to it (the last one with its gate verdict).
    """
    import sys  # noqa: PLC0415

    from . import gate as _gate  # noqa: PLC0415
    from .evaluate import Results, evaluate  # noqa: PLC0415

    if not args.results and not args.checkpoint:
        raise UsageError("give results JSON files (colorfid report results.json ...) or --checkpoint a.pth b.pth ...")
    out = Path(args.out)

    th = None
    explicit = args.config is not None
    if not args.no_gate:
        found = Path(args.config) if explicit else _gate.find_thresholds()
        th = _gate.load_thresholds(found) if found is not None else None

    base_obj: Any = None
    gate_base = None
    if args.baseline is not None:
        base_run = _as_base(args.baseline)
        base_obj = args.baseline
        if base_run.data.get("schema") == "colorfid.results":
            gate_base = _gate.Baseline.from_results(base_run.data)
        else:
            gate_base = _gate.load_baseline(args.baseline)
    elif th is not None and th.baseline is not None:
        gate_base = _gate.load_baseline(th.baseline, allow_missing=True)
        base_obj = gate_base

    runs: list[Any] = [Results.load(p) for p in args.results]
    if args.checkpoint:
        sets = list(args.sets) if args.sets else (list(th.stress_sets) if th is not None and th.stress_sets else None)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        for ckpt in args.checkpoint:
            print(f"colorfid report: evaluating {ckpt}", file=sys.stderr)
            res = evaluate(
                ckpt, sets, protocol=th.protocol if th is not None else None, device=args.device,
                tile=args.tile, cache_dir=args.cache, progress=None,
            )
            res.save(out / "checkpoints" / f"{_slug(Path(ckpt).stem)}.json")
            runs.append(res)

    verdict = None
    if th is not None:
        try:
            verdict = _gate.judge(runs[-1], th, gate_base)
        except UsageError as exc:
            if explicit:
                raise
            print(f"colorfid report: no verdicts ({th.source} does not apply: {exc})", file=sys.stderr)

    hist: list[dict[str, Any]] = []
    if args.history is not None and Path(args.history).exists():
        hist = load_history(args.history)
    index = write_report(
        runs, out, gate_report=verdict, baseline=base_obj, history=hist, worst_k=args.worst_k,
        metric=args.metric, full_size=args.full_size,
    )
    if args.history is not None and args.append_history:
        known = {((h.get("provenance") or {}).get("checkpoint_sha256"), h.get("created")) for h in hist}
        for i, r in enumerate(runs):
            key = (r.provenance.get("checkpoint_sha256"), r.created)
            if key[0] is not None and key in known:
                continue  # already recorded
            append_history(args.history, r, verdict if i == len(runs) - 1 else None)
    print(index)
    if verdict is not None:
        failed = sum(1 for r in verdict.rows if r.failed)
        print(f"gate: {'PASS' if verdict.passed else 'FAIL'} ({failed} of {len(verdict.rows)} checks failed)")
    return 0
