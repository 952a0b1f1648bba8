"""The page: every part of the report rendered into one self-contained ``index.html``."""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._files import json_default, utc_now
from .._format import finite, sig
from .._version import __version__
from ..errors import ColorfidWarning, ConfigError, UsageError
from ..metrics import get_metric
from .cards import Card, build_cards, card_flags, encode_cards, slug, worst_first
from .folder import check_report_dir, staged_report
from .history import load_history
from ..results import AGGREGATE_STATS, stat_label
from .inputs import Run, agg_value, as_base, as_run, gate_dict
from .maps import DE00_SCALE, HUE_SCALE, SAT_MAP_MIN_GT, SAT_SCALE
from .matrix import build_matrix, build_trends, trend_points
from .numbers import direction_text
from .svg import Ids, colorbar

__all__ = ["TABLE_METRICS", "MAX_REPORT_BYTES", "write_report", "check_report_dir"]

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


#: Size the report aims to stay under; beyond it images are re-encoded smaller, then a warning.
MAX_REPORT_BYTES: int = 5_000_000


#: (output long edge, small long edge, JPEG quality) tried in turn until the report fits.
_ENCODE_LADDER: tuple[tuple[int, int, int], ...] = ((768, 512, 82), (640, 400, 74), (512, 320, 66))


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
    env.filters["fmt"] = lambda v: sig(finite(v))
    env.filters["slug"] = slug
    return env


def _render(ctx: Mapping[str, Any]) -> str:
    import markupsafe  # noqa: PLC0415 - a jinja2 dependency

    ctx = dict(ctx)
    ids = Ids()
    ctx["colorbar"] = lambda key: markupsafe.Markup(colorbar(key, ids))
    for t in ctx["trends"]:
        for p in t["plots"]:
            p["svg"] = markupsafe.Markup(p["svg"])
    return _env().get_template("report.html.j2").render(**ctx)


def _checkpoint_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
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
        One ``colorfid.evaluation.Results`` (or its schema-v1 dict, or the path of a saved results
        JSON), or a list of them for several checkpoints, oldest first. The last one is the
        checkpoint shown in detail; all of them feed the trend plots.
    out_dir:
        Folder to write; created if missing. Receives ``index.html``, ``results.json`` (the
        detailed checkpoint's results, linked from the header), ``gate.json`` when a gate report is
        given, and with ``full_size=True`` a ``full/`` folder of full-resolution images and maps.
        The report is staged and swapped in whole (:mod:`colorfid.report.folder`): readers see
        the previous report or the new one, never a mixture, whatever happens to the writer;
        files colorfid did not write are never replaced or deleted
        (:class:`~colorfid.errors.OutputError` when the report needs their name).
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
    if isinstance(worst_k, bool) or not isinstance(worst_k, int) or worst_k < 0:
        raise UsageError(f"worst_k must be an integer >= 0, got {worst_k!r}")
    get_metric(metric)  # UnknownNameError listing the known names

    items = list(results) if isinstance(results, (list, tuple)) else [results]
    if not items:
        raise UsageError("write_report: results is an empty list; give at least one Results")
    runs = [as_run(r, i) for i, r in enumerate(items)]
    run = runs[-1]
    gate = gate_dict(gate_report)
    run.gate = gate
    base = as_base(baseline) if baseline is not None else None
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
    with staged_report(out, gate=gate is not None, full_size=full_size) as stage:
        _write_into(stage, run, runs, base, gate, hist, worst_k, metric, full_size)
    return out / "index.html"


def _write_into(
    stage: Path, run: Run, runs: list[Run], base: Run | None, gate: dict[str, Any] | None,
    hist: list[dict[str, Any]], worst_k: int, metric: str, full_size: bool,
) -> None:
    """Render the report into the (empty) staging folder ``stage``."""
    out = stage
    full_dir = out / "full" if full_size else None

    protocol = dict(run.data.get("protocol") or {})
    matrix = build_matrix(run, base, gate)
    set_names = [r["set"] for r in matrix["rows"]] + [s for s in run.data["sets"] if s not in {r["set"] for r in matrix["rows"]}]

    sections = []
    all_cards: list[Card] = []
    for sname in set_names:
        s = run.data["sets"][sname]
        set_protocol = dict(s.get("protocol") or protocol)  # the set's effective protocol
        cards = build_cards(run, base, sname, metric, worst_k, set_protocol, full_dir, out)
        all_cards += cards
        images = list(s.get("images") or [])
        table_cols = [m for m in TABLE_METRICS if any(m in (im.get("metrics") or {}) for im in images)]
        if metric not in table_cols and any(metric in (im.get("metrics") or {}) for im in images):
            table_cols.insert(0, metric)
        rows = []
        for im in worst_first(images, metric, len(images)):
            m = im.get("metrics") or {}
            rows.append(
                {
                    "name": str(im.get("name")),
                    "size": f"{im.get('width', '?')}×{im.get('height', '?')}",
                    "cells": [sig(finite(m.get(c))) for c in table_cols],
                    "flags": card_flags(m, set_protocol),
                }
            )
        agg = (s.get("aggregate") or {}).get(metric) or {}
        sections.append(
            {
                "name": sname,
                "id": "set-" + slug(sname),
                "description": s.get("description") or "",
                "path": s.get("path") or "",
                "kind": s.get("kind") or "",
                "n": len(images),
                "agg": {k: sig(agg_value(agg, k)) for k in AGGREGATE_STATS} if isinstance(agg, Mapping) else {},
                "agg_labels": {k: stat_label(k) for k in AGGREGATE_STATS},
                "cards": cards,
                "table_cols": table_cols,
                "table_rows": rows,
                "flag_count": sum(1 for r in rows if r["flags"]),
                "overrides": [(k, v) for k, v in set_protocol.items() if protocol.get(k) != v],
            }
        )

    points = trend_points(runs, hist)
    trends = build_trends(points, run, base, gate, matrix)

    # Side files: the results (and gate) JSON the header links to.
    (out / "results.json").write_text(
        json.dumps(run.data, indent=1, allow_nan=False, default=json_default, ensure_ascii=False), encoding="utf-8"
    )
    if gate is not None:
        (out / "gate.json").write_text(
            json.dumps(gate, indent=1, allow_nan=False, default=json_default, ensure_ascii=False), encoding="utf-8"
        )

    prov = run.provenance
    base_prov = base.provenance if base is not None else {}
    ctx = {
        "title": f"colorfid report · {run.label}",
        "version": __version__,
        "generated": utc_now(),
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
        "metric_direction": direction_text(metric),
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
        encode_cards(all_cards, out_edge, small_edge, quality)
        text = _render(ctx)
        if len(text.encode("utf-8")) <= MAX_REPORT_BYTES:
            break
    size = len(text.encode("utf-8"))
    if size > MAX_REPORT_BYTES:
        warnings.warn(
            f"report {index.name} is {size / 1e6:.1f} MB, over the {MAX_REPORT_BYTES / 1e6:.0f} MB aim even with "
            f"images at {_ENCODE_LADDER[-1][0]} px; lower worst_k or the number of sets",
            ColorfidWarning,
            stacklevel=3,
        )
    index.write_text(text, encoding="utf-8")
