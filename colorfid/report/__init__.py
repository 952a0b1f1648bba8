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

Maps (:mod:`~colorfid.report.maps`): ΔE2000, hue shift and saturation ratio on fixed scales, every
number from the lower rooms (no second implementation of a formula).

History: :func:`append_history` adds one JSON line per evaluated checkpoint (aggregates, gate
rows, provenance); :func:`load_history` reads them back; :func:`write_report` plots them.

Rooms: :mod:`~colorfid.report.inputs`, :mod:`~colorfid.report.history`,
:mod:`~colorfid.report.numbers`, :mod:`~colorfid.report.maps`, :mod:`~colorfid.report.svg`,
:mod:`~colorfid.report.cards`, :mod:`~colorfid.report.matrix`, :mod:`~colorfid.report.page`,
:mod:`~colorfid.report.folder` (the report folder: staging, the atomic swap, what colorfid owns);
the templates are in ``colorfid/templates/``. The ``colorfid report`` command is in
:mod:`colorfid.cli`.
"""

from __future__ import annotations

from .cards import GREY_COLLAPSE_CRITICAL, GREY_COLLAPSE_WARN, OUTPUT_LONG_EDGE, SMALL_LONG_EDGE
from .history import HISTORY_SCHEMA, HISTORY_SCHEMA_VERSION, append_history, history_record, load_history
from .maps import DE00_SCALE, HUE_SCALE, SAT_MAP_MIN_GT, SAT_SCALE
from .matrix import DEFAULT_MATRIX_METRICS
from .page import MAX_REPORT_BYTES, TABLE_METRICS, check_report_dir, write_report

__all__ = [
    "write_report",
    "check_report_dir",
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
    # also importable from here, as before the split
    "HISTORY_SCHEMA_VERSION",
    "OUTPUT_LONG_EDGE",
    "SMALL_LONG_EDGE",
    "DEFAULT_MATRIX_METRICS",
    "TABLE_METRICS",
]
