"""Evaluate a model, or saved predictions, on stress sets: per-image metrics -> :class:`Results`.

Data flow: stress set (``colorfid.stress``) -> image files (``colorfid.io``) -> model
(``colorfid.models.inference.run_model``) -> per-image metric dict
(``colorfid.metrics.image_metrics``) -> per-set aggregates -> :class:`Results`, a JSON-able
object with a versioned schema (``"colorfid.results"``, version 1, see :data:`RESULTS_SCHEMA`).

Every number comes from :mod:`colorfid.metrics`; this package only orchestrates
(:mod:`~colorfid.evaluation.run`), resolves models (:mod:`~colorfid.evaluation.source`) and sets
(:mod:`~colorfid.evaluation.sets`) and caches outputs (:mod:`~colorfid.evaluation.cache`); the
aggregation and the schema live in :mod:`colorfid.results`.

Output cache (:mod:`~colorfid.evaluation.cache`): outputs are cast to float32 *before* the
metrics in every run, so a run served from the cache gives exactly the metrics of the run that
filled it. Checkpoints are keyed by file sha256 and :class:`IdentityModel` by ``"identity"``; an
in-memory ``nn.Module`` is only read from the cache when the caller names it with
``cache_key=`` (its weights alone do not identify its behaviour), otherwise its outputs are
written (for reports) but never reused.
"""

from __future__ import annotations

from .._files import atomic_write_json
from ..metrics import badness
from ..results import (
    AGGREGATE_STATS, COLOR_PIPELINE, METRICS_VERSION, PSNR_CAP_DB, RECORDED_KEYS, RESULTS_SCHEMA,
    RESULTS_SCHEMA_VERSION, WORST_METRICS, Results, effective_protocol, protocol_dict,
)
from .cache import default_cache_dir
from .run import evaluate
from .sets import prediction_sets
from .source import IdentityModel, ModelLike, ModelSource, resolve_model

__all__ = [
    "RESULTS_SCHEMA",
    "RESULTS_SCHEMA_VERSION",
    "AGGREGATE_STATS",
    "IdentityModel",
    "ModelSource",
    "Results",
    "evaluate",
    "resolve_model",
    "prediction_sets",
    "effective_protocol",
    "default_cache_dir",
    "badness",
    # also importable from here, as before the split
    "WORST_METRICS",
    "METRICS_VERSION",
    "RECORDED_KEYS",
    "COLOR_PIPELINE",
    "PSNR_CAP_DB",
    "protocol_dict",
    "atomic_write_json",
    "ModelLike",
]
