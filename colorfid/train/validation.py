"""Validation during training: the gate's own path (:func:`colorfid.evaluation.evaluate` +
:func:`colorfid.gate.judge`), sharded across DDP ranks, with best-metric records, history and
reports."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from typing import Any, Mapping, Sequence

import torch.distributed as dist

from .._files import atomic_write_text, plain
from .._format import short
from ..errors import UnknownNameError, UsageError
from .state import unwrap

__all__ = ["validate", "record_validation", "merge_shards"]

logger = logging.getLogger("colorfid.train")


def validate(tr: Any) -> dict[str, Any] | None:
    """Evaluate on the validation sets (sharded across ranks), judge, record bests, report.

    Returns a summary dict on rank 0 (None elsewhere or without validation sets)."""
    if not tr.val_sets:
        return None
    from ..evaluation import evaluate

    v = tr.opt["val"]
    model = tr.ema.module if tr.val_use_ema else unwrap(tr.net)
    was_training = model.training
    cache_dir = tr.root / "val_outputs"
    key = f"{tr.opt['name']}-iter{tr.iteration}{'-ema' if tr.val_use_ema else ''}"
    sets = tr.val_sets
    if tr.world_size > 1:
        sets = [dataclasses.replace(s, pairs=list(s.pairs)[tr.rank::tr.world_size]) for s in tr.val_sets]
        sets = [s for s in sets if s.pairs]
    t0 = time.perf_counter()
    bar = getattr(tr, "bar", None)
    postfix = getattr(bar, "postfix", None)
    if bar is not None:  # the progress bar says what the pause is
        bar.set_postfix_str(f"validating {len(tr.val_sets)} set(s) ({'EMA' if tr.val_use_ema else 'raw'} weights)",
                            refresh=True)
    part = None
    if sets:
        part = evaluate(model, sets, protocol=None if tr.thresholds is None else
                        tr.thresholds.metric_protocol(), device=tr.device, tile=v["tile"],
                        overlap=v["overlap"], cache_dir=cache_dir, use_cache=bool(v["report"]),
                        cache_key=key, progress=False)
    model.train(was_training)
    unwrap(tr.net).train()  # evaluate() leaves the module it ran in eval mode
    if bar is not None:
        bar.set_postfix_str(postfix or "", refresh=True)
    if tr.world_size > 1:
        parts: list[Any] = [None] * tr.world_size
        dist.all_gather_object(parts, None if part is None else part.to_dict())
        if not tr.is_main:
            return None
        results = merge_shards([p for p in parts if p is not None], tr.val_sets)
    else:
        results = part
    assert results is not None
    secs = time.perf_counter() - t0
    gate_report = None
    if tr.thresholds is not None:
        from ..gate import judge

        try:
            gate_report = judge(results, tr.thresholds)
        except UsageError as exc:  # data-dependent (e.g. an undefined metric): report, keep training
            logger.error("validation @ iter %d: the gate could not judge these results: %s", tr.iteration, exc)
    summary = record_validation(tr, results, gate_report, secs)
    return summary


def record_validation(tr: Any, results: Any, gate_report: Any, secs: float) -> dict[str, Any]:
    """Save the results, update the best-metric record (and its checkpoint), the history, the
    logs and, with ``val.report``, the HTML report of one validation."""
    from ..metrics import METRICS

    v = tr.opt["val"]
    it = tr.iteration
    val_dir = tr.root / "validation"
    val_dir.mkdir(parents=True, exist_ok=True)
    results.provenance["checkpoint"] = str(tr.models_dir / f"net_g_{it}.pth")
    results.provenance["model"] = f"{tr.opt['name']}@{it}{' (EMA)' if tr.val_use_ema else ''}"
    # the entry of net_g_{it}.pth these numbers score (colorfid eval --checkpoint reads the same)
    results.provenance["weights"] = "params_ema" if tr.val_use_ema else "params"
    results.save(val_dir / f"results_{it}.json")
    new_best = []
    values: dict[str, float | None] = {}
    for set_name in results.set_names:
        for m in v["best_metrics"]:
            try:
                value = results.aggregate(set_name, m, "mean")
            except UnknownNameError:
                continue
            k = f"{set_name}/{m}"
            values[k] = value
            if value is None:
                continue
            score = METRICS[m].badness(value)
            old = tr.best.get(k)
            if old is None or score < old["score"]:
                tr.best[k] = {"value": value, "score": score, "iter": it, "stat": "mean",
                              "checkpoint": str(tr.models_dir / f"net_g_{it}.pth"), "ema": tr.val_use_ema,
                              "weights": "params_ema" if tr.val_use_ema else "params"}
                new_best.append(k)
    if new_best and not (tr.models_dir / f"net_g_{it}.pth").exists():
        tr.save_network()  # the best checkpoint must exist on disk
    atomic_write_text(tr.root / "best.json", json.dumps(plain(tr.best), indent=2, sort_keys=True))
    passed = None if gate_report is None else bool(gate_report.passed)
    failing: list[str] = []
    if gate_report is not None:
        rows = gate_report.to_dict().get("rows", [])
        failing = [f"{r.get('set')}/{r.get('metric')}={short(r.get('value'))} ({r.get('verdict')})"
                   for r in rows if str(r.get("verdict", "")).startswith("fail")]
    rec = {"iter": it, "epoch": tr.epoch, "seconds": round(secs, 3), "gate_passed": passed,
           "failing": failing, "metrics": values, "new_best": new_best}
    hist_path = tr.root / "val_history.jsonl"
    try:
        from ..report import append_history

        append_history(hist_path, results, gate_report)
    except Exception as exc:  # history is a convenience; never stop training for it
        logger.warning("could not append validation history %s: %s", hist_path, exc)
    if v["report"]:
        from ..report import write_report

        try:
            out = write_report(results, tr.root / "reports" / f"val_{it}", gate_report=gate_report,
                               history=hist_path if hist_path.exists() else None)
            rec["report"] = str(out)
        except Exception as exc:  # a report is evidence, not training: log and carry on
            logger.error("validation @ iter %d: could not write the HTML report: %s: %s", it,
                         type(exc).__name__, exc)
        # the report embeds its images; keep the 16-bit PNG outputs (results point at them) and
        # drop the float32 .npy copies, which would otherwise grow with every validation
        for npy in (tr.root / "val_outputs").glob(f"{tr.opt['name']}-iter{it}*/*/*.npy"):
            with contextlib.suppress(OSError):
                npy.unlink()
    tr.history.append(rec)
    with open(tr.root / "val_log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(plain(rec)) + "\n")
    logger.info("%s", validation_table(tr, results, gate_report, values, secs, new_best))
    if tr.tb is not None:
        for k, x in values.items():
            if x is not None:
                tr.tb.add_scalar(f"val/{k}", x, it)
        if passed is not None:
            tr.tb.add_scalar("val/gate_passed", float(passed), it)
    return rec


def validation_table(tr: Any, results: Any, gate_report: Any, values: Mapping[str, Any], secs: float,
                     new_best: Sequence[str]) -> str:
    """The log's validation record: one line per set, a column per ``val.best_metrics`` entry
    (mean over images, the value ``best.json`` tracks, formatted as everywhere else), and the
    set's gate verdict naming its failing metrics."""
    from .._format import sig
    from ..results import stat_label

    metrics = list(tr.opt["val"]["best_metrics"])
    head = ["set", *metrics, "gate"]
    rows = [head]
    for name in results.set_names:
        verdict = "-"
        if gate_report is not None:
            fails = [r.metric + ("↓" if r.verdict == "fail_regression" else "")
                     for r in gate_report.rows if r.set == name and r.failed]
            verdict = "PASS" if not fails else "FAIL " + ", ".join(fails)
        rows.append([name, *[sig(values.get(f"{name}/{m}")) for m in metrics], verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    weights = "EMA weights, params_ema" if tr.val_use_ema else "raw weights, params"
    lines = [f"validation @ iter {tr.iteration} ({secs:.1f} s, {weights}; {stat_label('mean')}):"]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(widths[i + 1]) for i, c in enumerate(r[1:-1])] + [r[-1]]
        lines.append("  " + "  ".join(cells))
    if new_best:
        lines.append(f"  new best: {', '.join(new_best)}")
    return "\n".join(lines)


def merge_shards(parts: Sequence[Mapping[str, Any]], sets: Sequence[Any]) -> Any:
    """Merge per-rank results of sharded sets back into one Results in the sets' image order."""
    from ..results import Results, aggregate_metric, worst_images

    results = [Results.from_dict(p, source="validation shard") for p in parts]
    merged_sets: dict[str, dict[str, Any]] = {}
    for s in sets:
        shards = [r.sets[s.name] for r in results if s.name in r.sets]
        if not shards:
            continue
        order = {p.name: i for i, p in enumerate(s.pairs)}
        images = sorted((im for sh in shards for im in sh["images"]), key=lambda im: order.get(im["name"], 0))
        names: list[str] = []
        for im in images:
            for k in im["metrics"]:
                if k not in names:
                    names.append(k)
        d = dict(shards[0])
        d["images"] = images
        d["aggregate"] = {k: aggregate_metric(k, [im["metrics"].get(k) for im in images]) for k in names}
        proto = d.get("protocol") or {}
        d["worst"] = worst_images(images, int(proto.get("worst_k", 3)))
        merged_sets[s.name] = d
    first = results[0]
    return Results(provenance=dict(first.provenance), protocol=dict(first.protocol), sets=merged_sets,
                      created=first.created)
