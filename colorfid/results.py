"""Results: what an evaluation measured, as a JSON-able object with a versioned schema
(``"colorfid.results"``, version 2), and the per-set aggregation of per-image metrics.

Aggregates over the images of a set (per metric, NaN images excluded, ``n`` = images counted),
the statistics a gate bound's ``stat`` picks and every table labels in the words of
:data:`STAT_LABELS` (:func:`aggregate_label` is the one producer of "which statistic of which
per-image metric"):

* ``mean`` -- "mean over images"; ``median`` -- "median over images";
* ``tail95`` -- "95 % of images at least this good": the 95th percentile of the images on the
  metric's bad side (numpy's linear interpolation): the 95th percentile for lower-is-better
  metrics, the 5th for higher-is-better ones, and ``target ± q95(|value - target|)`` on the side
  of the worst image for target metrics. Until schema version 2 it was called ``p95``, a name
  that read like the per-image percentiles of ``de00_p95`` / ``hue_shift_hc_p95``; ``p95`` is
  still read (thresholds files, version-1 results and baselines) and means ``tail95``;
* ``worst`` -- "worst image".

Units follow the metric registry (:data:`colorfid.metrics.METRICS`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ._files import atomic_write_json, load_json, utc_now
from .errors import ConfigError, UnknownNameError, UsageError
from .metrics import COLOR_PIPELINE, METRICS, METRICS_VERSION, MetricProtocol, badness

__all__ = [
    "RESULTS_SCHEMA",
    "RESULTS_SCHEMA_VERSION",
    "AGGREGATE_STATS",
    "STAT_ALIASES",
    "STAT_LABELS",
    "canonical_stat",
    "stat_label",
    "aggregate_label",
    "WORST_METRICS",
    "METRICS_VERSION",
    "RECORDED_KEYS",
    "COLOR_PIPELINE",
    "PSNR_CAP_DB",
    "Results",
    "aggregate_metric",
    "worst_images",
    "plain_float",
    "effective_protocol",
    "protocol_dict",
    "badness",
]

RESULTS_SCHEMA = "colorfid.results"
#: 2: the aggregate ``p95`` is called ``tail95`` (version-1 files are read and renamed).
RESULTS_SCHEMA_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Aggregate statistics of a metric over the images of a set (the gate's ``stat`` values).
AGGREGATE_STATS = ("mean", "median", "tail95", "worst")
#: Older names of the aggregate statistics, still read: name -> its current name.
STAT_ALIASES = {"p95": "tail95"}
#: Each aggregate statistic in words: what every table, report and log shows beside a value.
STAT_LABELS = {
    "mean": "mean over images",
    "median": "median over images",
    "tail95": "95 % of images at least this good",
    "worst": "worst image",
}
#: Metrics whose worst images are listed in each set's ``worst`` entry (headline first).
WORST_METRICS = ("de00_p95", "sat_ratio_hc", "hue_shift_hc_p95")
#: Protocol keys colorfid records itself (not MetricProtocol fields; not settable in [protocol]).
RECORDED_KEYS = ("color_pipeline", "metrics_version", "metric_dtype")

#: PSNR of identical images is infinite; results (JSON) record it as this many dB.
PSNR_CAP_DB = 100.0


def plain_float(value: Any, metric: str = "") -> float | None:
    """A metric value as a plain float; NaN / None -> None (JSON null).

    ``psnr = +inf`` (identical images) becomes :data:`PSNR_CAP_DB`; other infinities -> None.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().double().item()
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isinf(f) and f > 0 and metric == "psnr":
        return PSNR_CAP_DB
    return f if math.isfinite(f) else None


def canonical_stat(stat: str) -> str:
    """The current name of an aggregate statistic (``"p95"`` -> ``"tail95"``); others unchanged."""
    return STAT_ALIASES.get(stat, stat)


def stat_label(stat: str) -> str:
    """An aggregate statistic in words (:data:`STAT_LABELS`), e.g. ``"mean over images"``."""
    return STAT_LABELS.get(canonical_stat(stat), stat)


def aggregate_label(metric: str, stat: str) -> str:
    """Which statistic of which per-image metric a value is, in words: the metric's label and
    the statistic over images, e.g. ``"sat. ratio, hc pixels (mean over images)"``."""
    spec = METRICS.get(metric)
    return f"{spec.title if spec is not None else metric} ({stat_label(stat)})"


def _renamed_stats(agg: Mapping[str, Any]) -> dict[str, Any]:
    return {canonical_stat(str(k)): v for k, v in agg.items()}


def aggregate_metric(metric: str, values: Sequence[float | None]) -> dict[str, Any]:
    """The aggregates (:data:`AGGREGATE_STATS` and ``n``) of ``metric`` over a set's images
    (None values skipped); ``tail95`` and ``worst`` on the metric's bad side."""
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n = int(vals.size)
    if n == 0:
        return {"mean": None, "median": None, "tail95": None, "worst": None, "n": 0}
    spec = METRICS.get(metric)
    direction = "lower" if spec is None else spec.direction
    if direction == "higher":
        tail = float(np.percentile(vals, 5))
        worst = float(vals.min())
    elif direction == "target":
        t = float(spec.target)  # type: ignore[union-attr, arg-type]
        dev = np.abs(vals - t)
        i = int(np.argmax(dev))
        sign = 1.0 if vals[i] >= t else -1.0
        tail = float(t + sign * np.percentile(dev, 95))
        worst = float(vals[i])
    else:
        tail = float(np.percentile(vals, 95))
        worst = float(vals.max())
    return {
        "mean": float(vals.mean()),
        "median": float(np.median(vals)),
        "tail95": tail,
        "worst": worst,
        "n": n,
    }


def worst_images(images: list[dict], k: int) -> list[dict]:
    """The ``k`` worst images of a set for each of :data:`WORST_METRICS` (ties by name)."""
    out: list[dict] = []
    for metric in WORST_METRICS:
        scored = [
            (badness(metric, im["metrics"][metric]), im["name"], im["metrics"][metric])
            for im in images
            if im["metrics"].get(metric) is not None
        ]
        scored.sort(key=lambda t: (-t[0], t[1]))
        out.extend({"name": name, "metric": metric, "value": value} for _, name, value in scored[:k])
    return out


def effective_protocol(
    protocol: Any = None, overrides: Mapping[str, Any] | None = None, *, source: str = "protocol"
) -> Any:
    """``MetricProtocol`` from ``protocol`` (a MetricProtocol, a dict of fields, or None = the
    defaults) with a stress set's ``overrides`` on top. Unknown fields -> ConfigError naming
    ``source``."""
    if protocol is None:
        base = MetricProtocol()
    elif isinstance(protocol, MetricProtocol):
        base = protocol
    elif isinstance(protocol, Mapping):
        base = _protocol_from_dict(dict(protocol), source)
    else:
        raise ConfigError(f"{source}: expected a MetricProtocol or a table, got {type(protocol).__name__}")
    if not overrides:
        return base
    return _protocol_from_dict({**base.as_dict(), **dict(overrides)}, source)


def _protocol_from_dict(d: dict, source: str) -> Any:
    d = {k: v for k, v in d.items() if k not in RECORDED_KEYS}
    try:
        return MetricProtocol.from_dict(d)
    except (ConfigError, UnknownNameError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid protocol value: {exc}") from None


def protocol_dict(protocol: Any, metric_dtype: torch.dtype | str = torch.float64) -> dict[str, Any]:
    """The protocol as recorded in results and baselines (plain types): the MetricProtocol
    fields plus ``color_pipeline``, ``metrics_version`` and ``metric_dtype`` (the precision the
    metrics were computed in; float64 and float32 differ in the last digits, so a baseline
    measured in one is not compared strictly against a run in the other)."""
    d = {k: (v if isinstance(v, (bool, int, float, str)) or v is None else str(v)) for k, v in protocol.as_dict().items()}
    d["color_pipeline"] = COLOR_PIPELINE
    d["metrics_version"] = METRICS_VERSION
    d["metric_dtype"] = str(metric_dtype).replace("torch.", "")
    return d


_SET_KEYS = ("path", "kind", "description", "images", "aggregate", "worst")


def _finite(v: float | int) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond float range
        return False


@dataclasses.dataclass
class Results:
    """The outcome of :func:`evaluate`: provenance, protocol and per-set results.

    ``sets`` maps a set name to the schema-v1 dict (``path``, ``kind``, ``description``,
    ``images``, ``aggregate``, ``worst``, and ``protocol`` = the set's effective protocol).
    Everything is plain Python (str, int, float, None, lists, dicts): it crosses process
    boundaries and serialises with :meth:`to_dict` / :meth:`save`.
    """

    provenance: dict[str, Any]
    protocol: dict[str, Any]
    sets: dict[str, dict[str, Any]]
    created: str = dataclasses.field(default_factory=utc_now)

    # -- access
    @property
    def set_names(self) -> list[str]:
        return list(self.sets)

    def aggregate(self, set_name: str, metric: str, stat: str = "mean") -> float | None:
        """The aggregate ``stat`` of ``metric`` over ``set_name`` (None = undefined)."""
        try:
            return self.sets[set_name]["aggregate"][metric][canonical_stat(stat)]
        except KeyError:
            raise UnknownNameError(
                f"results have no {set_name!r}/{metric!r}/{stat!r}; sets: {sorted(self.sets)}"
            ) from None

    def set_protocol(self, set_name: str) -> dict[str, Any]:
        """The protocol the set was measured under (the top-level one if not recorded)."""
        return dict(self.sets[set_name].get("protocol") or self.protocol)

    def subset(self, names: Iterable[str]) -> "Results":
        names = list(names)
        return Results(dict(self.provenance), dict(self.protocol), {n: self.sets[n] for n in names}, self.created)

    @classmethod
    def merge(cls, parts: Sequence["Results"]) -> "Results":
        """Combine results of disjoint sets (e.g. one per pytest-xdist worker)."""
        if not parts:
            raise UsageError("Results.merge: nothing to merge")
        sets: dict[str, dict] = {}
        for r in parts:
            sets.update(r.sets)
        first = parts[0]
        return cls(dict(first.provenance), dict(first.protocol), sets, first.created)

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RESULTS_SCHEMA,
            "schema_version": RESULTS_SCHEMA_VERSION,
            "created": self.created,
            "provenance": dict(self.provenance),
            "protocol": dict(self.protocol),
            "aggregate_stats": dict(STAT_LABELS),
            "sets": {k: dict(v) for k, v in self.sets.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "results") -> "Results":
        """Validate and load a schema-v1 dict. ConfigError naming ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != RESULTS_SCHEMA:
            raise ConfigError(f"{source}: key 'schema' is {data.get('schema')!r}, expected {RESULTS_SCHEMA!r}")
        version = data.get("schema_version")
        if isinstance(version, bool) or version not in _READABLE_VERSIONS:
            raise ConfigError(
                f"{source}: key 'schema_version' is {version!r}; "
                f"this colorfid reads versions {', '.join(map(str, _READABLE_VERSIONS))}"
            )
        for key in ("provenance", "protocol", "sets"):
            if not isinstance(data.get(key), Mapping):
                raise ConfigError(f"{source}: key {key!r} is missing or not an object")
        sets: dict[str, dict] = {}
        for name, sd in data["sets"].items():
            if not isinstance(sd, Mapping):
                raise ConfigError(f"{source}: key 'sets.{name}' is not an object")
            for key in _SET_KEYS:
                if key not in sd:
                    raise ConfigError(f"{source}: key 'sets.{name}.{key}' is missing")
            if not isinstance(sd["images"], list) or not isinstance(sd["aggregate"], Mapping):
                raise ConfigError(f"{source}: key 'sets.{name}.images'/'aggregate' has the wrong type")
            aggregate = {}
            for metric, agg in sd["aggregate"].items():
                if not isinstance(agg, Mapping):
                    raise ConfigError(f"{source}: key 'sets.{name}.aggregate.{metric}' is not an object")
                agg = _renamed_stats(agg)  # version 1: p95 -> tail95
                for stat in AGGREGATE_STATS:
                    v = agg.get(stat)
                    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                        raise ConfigError(
                            f"{source}: key 'sets.{name}.aggregate.{metric}.{stat}' is not a number: {v!r}"
                        )
                    if v is not None and not _finite(v):
                        shown = f"an integer of {len(str(abs(v)))} digits" if isinstance(v, int) else repr(v)
                        raise ConfigError(
                            f"{source}: key 'sets.{name}.aggregate.{metric}.{stat}' is not a finite number: {shown}"
                        )
                aggregate[metric] = agg
            sets[str(name)] = dict(sd, aggregate=aggregate)
        return cls(
            provenance=dict(data["provenance"]),
            protocol=dict(data["protocol"]),
            sets=sets,
            created=str(data.get("created", "")),
        )

    def save(self, path: str | os.PathLike, *, what: str = "results file") -> Path:
        """Write the JSON file atomically; NaN are already None (null). OutputError naming the
        file when it cannot be written (read-only, a folder in the way...)."""
        return atomic_write_json(path, self.to_dict(), what=what)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a results JSON file (ConfigError naming the file when missing/corrupt)."""
        p = Path(path)
        return cls.from_dict(load_json(p, ConfigError, "results file"), source=str(p))
