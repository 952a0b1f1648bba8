"""The regression gate: thresholds (TOML) + optional baseline (JSON) + :class:`Results` -> verdicts.

Thresholds file
---------------
``colorfid.toml`` (or ``[tool.colorfid]`` in ``pyproject.toml``)::

    stress_sets = ["saturated_paint", "./sets/walls"]   # optional: sets to run (names or paths)
    baseline = "golden/baselines/main.json"            # optional: baseline file
    allow_missing_baseline = false                      # optional

    [protocol]                   # optional MetricProtocol overrides (colorfid.metrics)
    hc_saturation = 0.5

    [defaults]                   # bounds for every set: metric = { ... } or false
    de00_p95     = { max = 10.0, worse_abs = 0.5 }
    sat_ratio_hc = { target = 1.0, band = 0.10, worse_abs = 0.02 }
    psnr         = { min = 20.0, worse_abs = 0.3, stat = "mean" }

    [sets.saturated_paint]       # per-set overrides, merged over [defaults]
    sat_ratio_hc = { band = 0.08 }
    hue_drift_hc = false         # switch a default off for this set

Bound keys: ``max``, ``min``, ``target`` + ``band`` (two-sided: ``|value - target| <= band``;
``target`` defaults to the metric's registry target), ``worse_abs`` / ``worse_rel`` (regression
slack against the baseline: a value may be worse than the baseline by at most
``max(worse_abs, worse_rel * |baseline|)``), ``stat`` (which aggregate over the set's images:
``mean`` | ``median`` | ``tail95`` (95 % of images at least this good; ``p95``, its older name, is read as
``tail95``) | ``worst``, default ``mean``; see :mod:`colorfid.results`).
A per-set entry overrides the default entry field by field, except that naming any of
``min``/``max``/``target``/``band`` replaces the default's limits as a whole.

Which way is "worse" comes from the metric registry :data:`colorfid.metrics.METRICS`
(lower / higher / target). Verdicts per set x metric:

* ``fail_bound`` — outside the bound (also when the metric is undefined because the model's
  output has non-finite values);
* ``fail_regression`` — within the bound but worse than the baseline by more than the slack
  (with no ``worse_abs``/``worse_rel`` the slack is 0, up to 1e-9 relative float noise);
* ``improved`` — better than the baseline by more than the slack (improvements never fail);
* ``new`` — a baseline is in use but has no value for this set/metric;
* ``pass`` — everything else.

Usage errors (:class:`~colorfid.errors.UsageError` subclasses, naming the file and the key):
unknown metric / key / set, missing set path, non-number bound, min > max, empty band,
an entry that checks nothing, an undefined metric (empty mask) where a bound applies, a set
with no images or no applicable check (a vacuous pass is never a pass), a missing or corrupt
baseline (unless allowed), a baseline measured under a different protocol.

Baselines are small JSON files (``"schema": "colorfid.baseline"``) of per-set aggregates and
the protocol each set was measured under; :func:`write_baseline` writes only the sets that ran
and keeps the others, atomically.

Rooms: :mod:`~colorfid.gate.thresholds`, :mod:`~colorfid.gate.baseline`,
:mod:`~colorfid.gate.verdicts` (:func:`judge`), :mod:`~colorfid.gate.text` (tables) and
:mod:`~colorfid.gate.plan` (a whole run validated up front, for the CLI and the pytest plugin).
"""

from __future__ import annotations

from .baseline import BASELINE_SCHEMA, BASELINE_SCHEMA_VERSION, Baseline, load_baseline, write_baseline
from .plan import GatePlan, plan_gate
from .text import format_report
from .thresholds import BOUND_KEYS, NOISE_REL, TOP_KEYS, Bound, Thresholds, find_thresholds, load_thresholds, parse_thresholds
from .verdicts import GATE_SCHEMA, PASSING, VERDICTS, GateReport, GateRow, judge

__all__ = [
    "VERDICTS",
    "Bound",
    "Thresholds",
    "Baseline",
    "GateRow",
    "GateReport",
    "GatePlan",
    "load_thresholds",
    "parse_thresholds",
    "find_thresholds",
    "load_baseline",
    "write_baseline",
    "judge",
    "plan_gate",
    "format_report",
    # also importable from here, as before the split
    "PASSING",
    "BASELINE_SCHEMA",
    "BASELINE_SCHEMA_VERSION",
    "GATE_SCHEMA",
    "TOP_KEYS",
    "BOUND_KEYS",
    "NOISE_REL",
]
