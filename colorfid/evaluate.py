"""Evaluate a model, or saved predictions, on stress sets: per-image metrics -> :class:`Results`.

Data flow: stress set (``colorfid.stress``) -> image files (``colorfid.io``) -> model
(``colorfid.models.inference.run_model``) -> per-image metric dict
(``colorfid.metrics.image_metrics``) -> per-set aggregates -> :class:`Results`, a JSON-able
object with a versioned schema (``"colorfid.results"``, version 1, see :data:`RESULTS_SCHEMA`).

Every number comes from :mod:`colorfid.metrics`; this module only orchestrates, caches and
aggregates. Units follow the metric registry (``colorfid.metrics.METRICS``): CIEDE2000 in ΔE00
units, hue shifts in degrees, ratios dimensionless, PSNR in dB.

Aggregates over the images of a set (per metric, NaN images excluded, ``n`` = images counted):

* ``mean``, ``median`` — plain;
* ``p95`` — the 95th percentile *on the bad side* (linear interpolation, numpy's default):
  the 95th percentile for lower-is-better metrics, the 5th for higher-is-better ones, and for
  target metrics ``target ± q95(|value - target|)`` on the side of the worst image;
* ``worst`` — the worst image (max, min, or farthest from the target).

Output cache
------------
Model outputs are cached per (checkpoint sha256, inference settings, set, image stem) under
``<cache_dir>/<key>/<set>/``: ``<stem>.npy`` holds the exact float32 output (out-of-range and
non-finite values included, so the health metrics see what the model produced), ``<stem>.png``
a 16-bit PNG of the clipped output for reports (the ``output`` field of each image), and
``<stem>.json`` the sha256 of the input image it was computed from (a changed input is a miss).
Outputs are cast to float32 *before* the metrics in every run, so a run served from the cache
gives exactly the metrics of the run that filled it. The cache directory is, in order: the
``cache_dir`` argument, the ``COLORFID_CACHE`` environment variable, ``./.colorfid_cache``.
Checkpoints are keyed by file sha256 and :class:`IdentityModel` by ``"identity"``; an
in-memory ``nn.Module`` is only read from the cache when the caller names it with
``cache_key=`` (its weights alone do not identify its behaviour), otherwise its outputs are
written (for reports) but never reused.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import metrics as _metrics
from ._atomic import atomic_write_bytes
from ._version import __version__
from .errors import (
    CheckpointError,
    ColorfidError,
    ColorfidWarning,
    ConfigError,
    ShapeError,
    StressSetError,
    UnknownNameError,
    UsageError,
)

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
]

RESULTS_SCHEMA = "colorfid.results"
RESULTS_SCHEMA_VERSION = 1
#: Aggregate statistics of a metric over the images of a set (the gate's ``stat`` values).
AGGREGATE_STATS = ("mean", "median", "p95", "worst")
#: Metrics whose worst images are listed in each set's ``worst`` entry (headline first).
WORST_METRICS = ("de00_p95", "sat_ratio_hc", "hue_shift_hc_p95")
#: Version of the metric definitions recorded in the protocol (bumped when a formula changes).
METRICS_VERSION: int = int(getattr(_metrics, "METRICS_VERSION", 1))
#: Protocol keys colorfid records itself (not MetricProtocol fields; not settable in [protocol]).
RECORDED_KEYS = ("color_pipeline", "metrics_version", "metric_dtype")
#: The colour pipeline the metrics use, recorded in every protocol.
COLOR_PIPELINE: str = str(
    getattr(
        _metrics,
        "COLOR_PIPELINE",
        "sRGB (IEC 61966-2-1) -> linear -> XYZ (D65, Y=1) -> CIELAB (CIE 015:2018, D65 2deg); "
        "dE = CIEDE2000 (Sharma et al. 2005)",
    )
)

ModelLike = Union[nn.Module, str, os.PathLike, None]


# --------------------------------------------------------------------------- models


class IdentityModel(nn.Module):
    """A model that returns its input: the "do nothing" baseline (LQ passed through).

    Handy for demos and for checking that a gate *fails* an untouched input.
    ``evaluate("identity", ...)`` uses it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.clone()


class ModelSource:
    """What produced the outputs of an evaluation (see :func:`resolve_model`).

    ``kind`` is ``"checkpoint"``, ``"module"``, ``"identity"`` or ``"predictions"``;
    ``cache_key`` is the cache folder's key, ``reuse_cache`` whether cached outputs may be read.
    A checkpoint resolved lazily is loaded on first access to :attr:`model` (a run served
    entirely from the output cache never loads it).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        model: nn.Module | None = None,
        checkpoint: str | None = None,
        sha256: str | None = None,
        cache_key: str | None = None,
        reuse_cache: bool = False,
        loader: Any = None,
    ) -> None:
        self.kind, self.name, self.checkpoint, self.sha256 = kind, name, checkpoint, sha256
        self.cache_key, self.reuse_cache = cache_key, reuse_cache
        self._model, self._loader = model, loader

    @property
    def has_model(self) -> bool:
        return self.kind != "predictions"

    @property
    def model(self) -> nn.Module | None:
        if self._model is None and self._loader is not None:
            self._model = self._loader()
            self._loader = None
            self.name = type(self._model).__name__
        return self._model

    def __repr__(self) -> str:
        return f"ModelSource(kind={self.kind!r}, name={self.name!r}, checkpoint={self.checkpoint!r})"


def _module_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(repr(model).encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            v = value.detach().cpu().contiguous()
            h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def resolve_model(
    model_or_predictions: ModelLike,
    *,
    device: str | torch.device | None = None,
    cache_key: str | None = None,
    lazy: bool = False,
) -> ModelSource:
    """Turn what the user passed into a :class:`ModelSource`.

    * ``nn.Module`` — used as is (moved to ``device``, put in eval mode);
    * ``"identity"`` — :class:`IdentityModel`;
    * ``None`` or ``"predictions"`` — no model: sets must carry ``pred/`` images;
    * any other ``str`` / path — a checkpoint file, loaded with
      :func:`colorfid.models.checkpoint.load_model` and keyed by its sha256 (with ``lazy``
      only when a model output is first needed).

    Raises:
        CheckpointError: the checkpoint is missing or cannot be loaded.
        UsageError: an unsupported type.
    """
    from .models.inference import select_device

    if isinstance(model_or_predictions, ModelSource):
        return model_or_predictions
    if model_or_predictions is None or (
        isinstance(model_or_predictions, str) and model_or_predictions == "predictions"
    ):
        return ModelSource(kind="predictions", name="predictions")
    dev = select_device(device)
    if isinstance(model_or_predictions, str) and model_or_predictions == "identity":
        model_or_predictions = IdentityModel()
    if isinstance(model_or_predictions, IdentityModel):
        return ModelSource(
            kind="identity",
            name="IdentityModel",
            model=model_or_predictions.to(dev).eval(),
            cache_key=cache_key or "identity",
            reuse_cache=True,
        )
    if isinstance(model_or_predictions, nn.Module):
        model = model_or_predictions.to(dev).eval()
        key = cache_key or "module-" + _module_fingerprint(model)[:16]
        return ModelSource(
            kind="module",
            name=type(model).__name__,
            model=model,
            cache_key=key,
            reuse_cache=cache_key is not None,
        )
    if isinstance(model_or_predictions, (str, os.PathLike)):
        from .models.checkpoint import file_sha256, load_model

        path = Path(model_or_predictions).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
            )
        sha = file_sha256(path)

        def _load() -> nn.Module:
            try:
                return load_model(path, device=dev).eval()
            except (ColorfidError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - torch.load can fail in many ways on a bad file
                raise CheckpointError(
                    f"checkpoint {str(path)!r} cannot be loaded ({type(exc).__name__}: {exc}); corrupt or not a checkpoint?"
                ) from exc

        src = ModelSource(
            kind="checkpoint",
            name="NAFNet",
            checkpoint=str(path.resolve()),
            sha256=sha,
            cache_key=sha[:16],
            reuse_cache=True,
            loader=_load,
        )
        if not lazy:
            src.model  # noqa: B018 - load now: errors surface here
        return src
    raise UsageError(
        "evaluate() takes an nn.Module, a checkpoint path, 'identity', or None / 'predictions'; "
        f"got {type(model_or_predictions).__name__}"
    )


# --------------------------------------------------------------------------- helpers


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


#: PSNR of identical images is infinite; results (JSON) record it as this many dB.
PSNR_CAP_DB = 100.0


def _plain_float(value: Any, metric: str = "") -> float | None:
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


def _direction(metric: str) -> tuple[str, float | None]:
    spec = _metrics.METRICS.get(metric)
    if spec is None:
        return "lower", None
    return str(spec.direction), (None if spec.target is None else float(spec.target))


def badness(metric: str, value: float) -> float:
    """How bad ``value`` is for ``metric`` on a common "higher is worse" axis.

    ``value`` for lower-is-better metrics, ``-value`` for higher-is-better ones and
    ``|value - target|`` for target metrics (direction and target from ``metrics.METRICS``).
    """
    direction, target = _direction(metric)
    if direction == "higher":
        return -value
    if direction == "target":
        return abs(value - (target if target is not None else 0.0))
    return value


def _aggregate(metric: str, values: Sequence[float | None]) -> dict[str, Any]:
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n = int(vals.size)
    if n == 0:
        return {"mean": None, "median": None, "p95": None, "worst": None, "n": 0}
    direction, target = _direction(metric)
    if direction == "higher":
        p95 = float(np.percentile(vals, 5))
        worst = float(vals.min())
    elif direction == "target":
        t = target if target is not None else 0.0
        dev = np.abs(vals - t)
        i = int(np.argmax(dev))
        sign = 1.0 if vals[i] >= t else -1.0
        p95 = float(t + sign * np.percentile(dev, 95))
        worst = float(vals[i])
    else:
        p95 = float(np.percentile(vals, 95))
        worst = float(vals.max())
    return {
        "mean": float(vals.mean()),
        "median": float(np.median(vals)),
        "p95": p95,
        "worst": worst,
        "n": n,
    }


def _worst_list(images: list[dict], k: int) -> list[dict]:
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
    MetricProtocol = _metrics.MetricProtocol
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
        return _metrics.MetricProtocol.from_dict(d)
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


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The output cache folder: ``cache_dir``, else ``$COLORFID_CACHE``, else ``./.colorfid_cache``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("COLORFID_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / ".colorfid_cache"


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (temp file + rename)."""
    p = Path(path)
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    _atomic_write_bytes(p, text.encode("utf-8"))
    return p


# --------------------------------------------------------------------------- results


_SET_KEYS = ("path", "kind", "description", "images", "aggregate", "worst")


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
    created: str = dataclasses.field(default_factory=_utc_now)

    # -- access
    @property
    def set_names(self) -> list[str]:
        return list(self.sets)

    def aggregate(self, set_name: str, metric: str, stat: str = "mean") -> float | None:
        """The aggregate ``stat`` of ``metric`` over ``set_name`` (None = undefined)."""
        try:
            return self.sets[set_name]["aggregate"][metric][stat]
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
            "sets": {k: dict(v) for k, v in self.sets.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "results") -> "Results":
        """Validate and load a schema-v1 dict. ConfigError naming ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != RESULTS_SCHEMA:
            raise ConfigError(f"{source}: key 'schema' is {data.get('schema')!r}, expected {RESULTS_SCHEMA!r}")
        if data.get("schema_version") != RESULTS_SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: key 'schema_version' is {data.get('schema_version')!r}; "
                f"this colorfid reads version {RESULTS_SCHEMA_VERSION}"
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
            for metric, agg in sd["aggregate"].items():
                if not isinstance(agg, Mapping):
                    raise ConfigError(f"{source}: key 'sets.{name}.aggregate.{metric}' is not an object")
                for stat in AGGREGATE_STATS:
                    v = agg.get(stat)
                    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                        raise ConfigError(
                            f"{source}: key 'sets.{name}.aggregate.{metric}.{stat}' is not a number: {v!r}"
                        )
            sets[str(name)] = dict(sd)
        return cls(
            provenance=dict(data["provenance"]),
            protocol=dict(data["protocol"]),
            sets=sets,
            created=str(data.get("created", "")),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON file atomically; NaN are already None (null)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a results JSON file (ConfigError naming the file when missing/corrupt)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"results file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"results file {str(p)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(p))


# --------------------------------------------------------------------------- predictions


def prediction_sets(root: str | os.PathLike, names: Sequence[str] | None = None) -> list[Any]:
    """Stress sets to gate saved predictions with no model.

    ``root`` is either one set folder (``pred/`` + ``gt/``), or a folder of them, or a folder
    whose sub-folders are named after bundled sets and hold the predictions for those sets'
    images (``<root>/<set>/<stem>.png`` or ``<root>/<set>/pred/<stem>.png``, matched to the
    bundled GT by file stem). ``names`` keeps only those sets.

    Raises:
        StressSetError: the folder is missing or holds no usable set; predictions do not match
            the bundled GT (the missing and extra names are listed).
        UnknownNameError: a name in ``names`` is not among the sets found.
    """
    from . import stress

    r = Path(root).expanduser()
    if not r.is_dir():
        raise StressSetError(f"predictions folder {str(r)!r} does not exist or is not a folder")
    found: list[Any] = []
    if (r / "gt").is_dir():
        found.append(stress.load_stress_set(r))
    else:
        bundled = set(stress.bundled_set_names())
        ignored: list[str] = []
        for d in sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (d / "gt").is_dir():
                found.append(stress.load_stress_set(d))
            elif d.name in bundled:
                found.append(_overlay_predictions(stress.bundled_set(d.name), d))
            else:
                ignored.append(d.name)
        if not found:
            raise StressSetError(
                f"predictions folder {str(r)!r} holds no stress set: expected pred/ + gt/ in it or in "
                f"its sub-folders, or sub-folders named after bundled sets {sorted(bundled)}"
                + (f"; found sub-folders {ignored}" if ignored else "")
            )
    for s in found:
        if s.kind != "pred":
            raise StressSetError(f"set {s.name!r} ({s.root}) has no pred/ folder: nothing to gate without a model")
    if names:
        by_name = {s.name: s for s in found}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise UnknownNameError(
                f"set(s) {unknown} not found in predictions folder {str(r)!r}; found: {sorted(by_name)}"
            )
        found = [by_name[n] for n in names]
    return found


def _overlay_predictions(bundled_set: Any, folder: Path) -> Any:
    from .stress import attach_predictions

    pred_dir = folder / "pred" if (folder / "pred").is_dir() else folder
    return attach_predictions(bundled_set, pred_dir)


def _resolve_sets(sets: Any) -> list[Any]:
    from . import stress

    if sets is None:
        return list(stress.resolve_sets(None))
    if isinstance(sets, (str, os.PathLike)) or hasattr(sets, "pairs"):
        sets = [sets]
    out: list[Any] = []
    specs: list[Any] = []
    for s in sets:
        if hasattr(s, "pairs") and hasattr(s, "root"):
            if specs:
                out.extend(stress.resolve_sets(specs))
                specs = []
            out.append(s)
        else:
            specs.append(s)
    if specs:
        out.extend(stress.resolve_sets(specs))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two stress sets share the name(s) {dup}; rename one folder")
    return out


# --------------------------------------------------------------------------- cache


@dataclasses.dataclass
class _OutputCache:
    root: Path
    key: str
    settings: dict[str, Any]
    reuse: bool
    enabled: bool = True
    model_dtype: str = "float32"

    @property
    def folder(self) -> Path:
        tag = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        return self.root / f"{self.key}-{tag}"

    def paths(self, set_name: str, stem: str) -> tuple[Path, Path, Path]:
        d = self.folder / _safe(set_name)
        s = _safe(stem)
        return d / f"{s}.npy", d / f"{s}.png", d / f"{s}.json"

    def get(self, set_name: str, stem: str, input_sha: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if not (self.enabled and self.reuse):
            return None
        npy, _png, meta = self.paths(set_name, stem)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            if info.get("input_sha256") != input_sha:
                return None
            arr = np.load(npy, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            warnings.warn(f"colorfid: ignoring a corrupt cache entry {meta}: {exc}", ColorfidWarning, stacklevel=3)
            return None
        if arr.dtype != np.float32 or arr.ndim != 3 or arr.shape[0] != 3:
            return None
        return arr

    def put(self, set_name: str, stem: str, input_sha: str, out: np.ndarray) -> Path | None:
        if not self.enabled:
            return None
        npy, png, meta = self.paths(set_name, stem)
        npy.parent.mkdir(parents=True, exist_ok=True)
        import io as _io

        buf = _io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        _atomic_write_bytes(npy, buf.getvalue())
        self.ensure_png(set_name, stem, out)
        atomic_write_json(
            meta,
            {"input_sha256": input_sha, "shape": list(out.shape), "dtype": "float32", "created": _utc_now(),
             "key": self.key, "settings": self.settings},
        )
        if not (self.folder / "meta.json").exists():
            atomic_write_json(
                self.folder / "meta.json",
                {"key": self.key, "settings": self.settings, "model_dtype": self.model_dtype,
                 "colorfid_version": __version__},
            )
        return png

    def ensure_png(self, set_name: str, stem: str, out: np.ndarray) -> Path | None:
        if not self.enabled:
            return None
        _npy, png, _meta = self.paths(set_name, stem)
        if not png.exists():
            from .io import write_image

            t = torch.from_numpy(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)).clamp_(0.0, 1.0)
            write_image(png, t, bits=16)
        return png


def _safe(name: str) -> str:
    keep = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)
    return keep or "_"


# --------------------------------------------------------------------------- evaluate


def _dtype_name(source: ModelSource, amp: Any, device: str, cache: "_OutputCache") -> str:
    dtype = "float32"
    if source.has_model:
        loaded = source._model
        if loaded is not None:
            for p in loaded.parameters():
                if p.is_floating_point():
                    dtype = str(p.dtype).replace("torch.", "")
                    break
        else:  # every output came from the cache: the dtype recorded when it was filled
            try:
                dtype = str(json.loads((cache.folder / "meta.json").read_text(encoding="utf-8")).get("model_dtype", dtype))
            except (OSError, ValueError):
                pass
    if amp and not device.startswith("cpu"):
        return f"{dtype}+autocast({amp})"
    return dtype


def evaluate(
    model_or_predictions: ModelLike = None,
    sets: Any = None,
    *,
    protocol: Any = None,
    device: str | torch.device | None = None,
    tile: int | None = None,
    overlap: int = 32,
    amp: Any = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    cache_key: str | None = None,
    progress: bool | None = None,
    metric_dtype: torch.dtype = torch.float64,
) -> Results:
    """Run a model (or read saved predictions) on stress sets and measure every image.

    Args:
        model_or_predictions: an ``nn.Module``, a checkpoint path, ``"identity"``, or
            ``None`` / ``"predictions"`` to measure the sets' ``pred/`` images
            (see :func:`resolve_model`). A :class:`ModelSource` is accepted too.
        sets: stress sets: bundled names, folder paths, ``StressSet`` objects, or None
            (all bundled sets) — resolved with :func:`colorfid.stress.resolve_sets`.
        protocol: base ``MetricProtocol`` (or dict of its fields); each set's ``set.toml``
            ``[protocol]`` overrides apply on top.
        device, tile, overlap, amp: inference settings passed to ``run_model``.
        cache_dir, use_cache, cache_key: the output cache (module docstring).
        progress: a tqdm bar per set (None = only on a TTY).
        metric_dtype: precision of the metric computation (float64 = the reference).

    Returns:
        :class:`Results` (schema v1).

    Raises:
        StressSetError: a set has no images, lacks ``lq/`` (model) or ``pred/`` (predictions),
            or a prediction's size differs from its GT.
        ShapeError: the model changed an image's size.
        CheckpointError, UnknownNameError, ConfigError: from model / set / protocol resolution.
    """
    from tqdm.auto import tqdm

    from .io import read_image

    source = resolve_model(model_or_predictions, device=device, cache_key=cache_key, lazy=True)
    stress_sets = _resolve_sets(sets)
    if not stress_sets:
        raise StressSetError("no stress sets to evaluate")
    base_protocol = effective_protocol(protocol)
    dev_name = "cpu"
    if source.has_model:
        from .models.inference import run_model, select_device

        dev = select_device(device)
        dev_name = str(dev)
    settings = {"device": dev_name.split(":")[0], "tile": tile, "overlap": overlap if tile else None,
                "amp": None if not amp else str(amp)}
    cache = _OutputCache(
        root=default_cache_dir(cache_dir),
        key=source.cache_key or "none",
        settings=settings,
        reuse=source.reuse_cache and use_cache,
        enabled=source.has_model and use_cache,
    )
    provenance = {
        "model": source.name,
        "checkpoint": source.checkpoint,
        "checkpoint_sha256": source.sha256,
        "colorfid_version": __version__,
        "torch_version": str(torch.__version__),
        "device": dev_name,
        "dtype": None,
        "tile": tile,
        "overlap": overlap if tile else None,
        "source": source.kind,
        "cache_key": cache.folder.name if cache.enabled else None,
        # "fused" (the kernels of `colorfid kernels build`) or "eager": equal to float rounding.
        "metric_kernels": _metrics.metric_kernels(metric_dtype, "cpu"),
    }
    out_sets: dict[str, dict[str, Any]] = {}
    timing = {"read_s": 0.0, "inference_s": 0.0, "cache_write_s": 0.0, "metrics_s": 0.0, "cache_hits": 0, "cache_misses": 0}
    clock = time.perf_counter
    for sset in stress_sets:
        proto = effective_protocol(
            base_protocol, getattr(sset, "protocol_overrides", None) or None, source=f"{sset.root}/set.toml [protocol]"
        )
        pairs = list(sset.pairs)
        if not pairs:
            raise StressSetError(f"stress set {sset.name!r} ({sset.root}) has no images")
        images: list[dict[str, Any]] = []
        bar = tqdm(pairs, desc=f"colorfid {sset.name}", unit="img", disable=not _progress_enabled(progress),
                   file=sys.stderr, leave=False)
        try:
            for pair in bar:
                t0 = clock()
                gt = read_image(pair.gt)
                timing["read_s"] += clock() - t0
                if not source.has_model:
                    if pair.pred is None:
                        raise StressSetError(
                            f"stress set {sset.name!r} ({sset.root}): image {pair.name!r} has no prediction "
                            "(pred/); pass a model or checkpoint to run on lq/"
                        )
                    t0 = clock()
                    out_t = read_image(pair.pred).to(torch.float32)
                    timing["read_s"] += clock() - t0
                    out_path: str | None = str(pair.pred)
                    if tuple(out_t.shape) != tuple(gt.shape):
                        raise StressSetError(
                            f"stress set {sset.name!r}: prediction {str(pair.pred)!r} is {tuple(out_t.shape)} "
                            f"but its GT {str(pair.gt)!r} is {tuple(gt.shape)}"
                        )
                else:
                    if pair.lq is None:
                        raise StressSetError(
                            f"stress set {sset.name!r} ({sset.root}): image {pair.name!r} has no lq/ input "
                            "to run the model on"
                        )
                    t0 = clock()
                    input_sha = _sha256_file(Path(pair.lq))
                    arr = cache.get(sset.name, pair.name, input_sha, tuple(gt.shape))
                    timing["read_s"] += clock() - t0
                    if arr is None:
                        timing["cache_misses"] += 1
                        t0 = clock()
                        lq = read_image(pair.lq)
                        t1 = clock()
                        timing["read_s"] += t1 - t0
                        with torch.no_grad():
                            out = run_model(source.model, lq, tile=tile, overlap=overlap, device=device, amp=amp)
                        cache.model_dtype = next(
                            (str(q.dtype).replace("torch.", "") for q in source.model.parameters() if q.is_floating_point()),
                            "float32",
                        )
                        arr = out.detach().to("cpu", torch.float32).contiguous().numpy()
                        timing["inference_s"] += clock() - t1
                        if arr.shape != tuple(lq.shape):
                            raise ShapeError(
                                f"model {source.name} turned {str(pair.lq)!r} of shape {tuple(lq.shape)} into "
                                f"{arr.shape}; colorfid gates same-size restoration models"
                            )
                        t0 = clock()
                        png = cache.put(sset.name, pair.name, input_sha, arr)
                        timing["cache_write_s"] += clock() - t0
                    else:
                        timing["cache_hits"] += 1
                        t0 = clock()
                        png = cache.ensure_png(sset.name, pair.name, arr)
                        timing["cache_write_s"] += clock() - t0
                    out_path = str(png) if png is not None else None
                    out_t = torch.from_numpy(arr)
                    if tuple(out_t.shape) != tuple(gt.shape):
                        raise StressSetError(
                            f"stress set {sset.name!r}: output for {str(pair.lq)!r} is {tuple(out_t.shape)} "
                            f"but its GT {str(pair.gt)!r} is {tuple(gt.shape)}"
                        )
                t0 = clock()
                m = _metrics.image_metrics(out_t, gt, protocol=proto, dtype=metric_dtype)
                timing["metrics_s"] += clock() - t0
                images.append(
                    {
                        "name": pair.name,
                        "gt": str(pair.gt),
                        "lq": None if pair.lq is None else str(pair.lq),
                        "output": out_path,
                        "height": int(gt.shape[-2]),
                        "width": int(gt.shape[-1]),
                        "metrics": {str(k): _plain_float(v, str(k)) for k, v in m.items()},
                    }
                )
        finally:
            bar.close()
        metric_names: list[str] = []
        for im in images:
            for k in im["metrics"]:
                if k not in metric_names:
                    metric_names.append(k)
        aggregate = {k: _aggregate(k, [im["metrics"].get(k) for im in images]) for k in metric_names}
        out_sets[sset.name] = {
            "path": str(sset.root),
            "kind": "lq" if source.has_model else "pred",
            "description": str(getattr(sset, "description", "") or ""),
            "images": images,
            "aggregate": aggregate,
            "worst": _worst_list(images, int(getattr(proto, "worst_k", 3))),
            "protocol": protocol_dict(proto, metric_dtype),
        }
    provenance["model"] = source.name
    provenance["dtype"] = _dtype_name(source, amp, dev_name, cache)
    provenance["timing"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timing.items()}
    return Results(provenance=provenance, protocol=protocol_dict(base_protocol, metric_dtype), sets=out_sets)
