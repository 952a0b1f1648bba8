"""Run a model (or read saved predictions) on stress sets and measure every image."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .._files import sha256_file
from .._threads import limited as limited_threads
from .._version import __version__
from ..errors import ColorfidWarning, ShapeError, StressSetError
from ..metrics import image_metrics, metric_kernels
from ..results import Results, aggregate_metric, effective_protocol, plain_float, protocol_dict, worst_images
from .cache import OutputCache, default_cache_dir
from .sets import collect_sets
from .source import ModelLike, ModelSource, resolve_model

__all__ = ["evaluate"]


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _dtype_name(source: ModelSource, amp: Any, device: str, cache: OutputCache) -> str:
    dtype = "float32"
    if source.has_model:
        loaded = source.loaded_model
        if loaded is not None:
            for p in loaded.parameters():
                if p.is_floating_point():
                    dtype = str(p.dtype).replace("torch.", "")
                    break
        else:  # every output came from the cache: the dtype recorded when it was filled
            dtype = cache.recorded_model_dtype(dtype)
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
    weights: str | None = None,
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
        weights: for a checkpoint path, the BasicSR entry to score: ``"params_ema"`` (default:
            the EMA weights a training validated; ``params`` where the file has none) or
            ``"params"``; ``provenance.weights`` records the entry used.

    Returns:
        :class:`Results` (schema v1).

    Raises:
        StressSetError: a set has no images, lacks ``lq/`` (model) or ``pred/`` (predictions),
            or a prediction's size differs from its GT.
        ShapeError: the model changed an image's size.
        CheckpointError, UnknownNameError, ConfigError: from model / set / protocol resolution.
    """
    from tqdm.auto import tqdm

    from ..io import read_image

    source = resolve_model(model_or_predictions, device=device, cache_key=cache_key, lazy=True, weights=weights)
    note = source.ema_note()
    if note:
        warnings.warn(note, ColorfidWarning, stacklevel=2)
    stress_sets = collect_sets(sets)
    if not stress_sets:
        raise StressSetError("no stress sets to evaluate")
    base_protocol = effective_protocol(protocol)
    dev_name = "cpu"
    if source.has_model:
        from ..models.inference import run_model, select_device

        dev = select_device(device)
        dev_name = str(dev)
    settings = {"device": dev_name.split(":")[0], "tile": tile, "overlap": overlap if tile else None,
                "amp": None if not amp else str(amp)}
    cache = OutputCache(
        root=default_cache_dir(cache_dir),
        key=source.cache_key or "none",
        settings=settings,
        reuse=source.reuse_cache and use_cache,
        enabled=source.has_model and use_cache,
    )
    cache.check()  # an unwritable cache is a usage error now, not after the first inference
    provenance = {
        "model": source.name,
        "checkpoint": source.checkpoint,
        "checkpoint_sha256": source.sha256,
        # the checkpoint entry scored: "params_ema" (EMA weights), "params", None (bare / not a file)
        "weights": source.weights,
        "colorfid_version": __version__,
        "torch_version": str(torch.__version__),
        "device": dev_name,
        "dtype": None,
        "tile": tile,
        "overlap": overlap if tile else None,
        "source": source.kind,
        "cache_key": cache.folder.name if cache.enabled else None,
        # "fused" (the kernels of `colorfid kernels build`) or "eager": equal to float rounding.
        "metric_kernels": metric_kernels(metric_dtype, "cpu"),
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
        threads = contextlib.ExitStack()  # torch threads for this set: colorfid._threads
        timing["threads"] = threads.enter_context(limited_threads())
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
                    input_sha = sha256_file(Path(pair.lq))
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
                m = image_metrics(out_t, gt, protocol=proto, dtype=metric_dtype)
                timing["metrics_s"] += clock() - t0
                images.append(
                    {
                        "name": pair.name,
                        "gt": str(pair.gt),
                        "lq": None if pair.lq is None else str(pair.lq),
                        "output": out_path,
                        "height": int(gt.shape[-2]),
                        "width": int(gt.shape[-1]),
                        "metrics": {str(k): plain_float(v, str(k)) for k, v in m.items()},
                    }
                )
        finally:
            bar.close()
            threads.close()
        metric_names: list[str] = []
        for im in images:
            for k in im["metrics"]:
                if k not in metric_names:
                    metric_names.append(k)
        aggregate = {k: aggregate_metric(k, [im["metrics"].get(k) for im in images]) for k in metric_names}
        out_sets[sset.name] = {
            "path": str(sset.root),
            "kind": "lq" if source.has_model else "pred",
            "description": str(getattr(sset, "description", "") or ""),
            "images": images,
            "aggregate": aggregate,
            "worst": worst_images(images, int(getattr(proto, "worst_k", 3))),
            "protocol": protocol_dict(proto, metric_dtype),
        }
    provenance["model"] = source.name
    provenance["dtype"] = _dtype_name(source, amp, dev_name, cache)
    provenance["timing"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timing.items()}
    return Results(provenance=provenance, protocol=protocol_dict(base_protocol, metric_dtype), sets=out_sets)
