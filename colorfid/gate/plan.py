"""A whole gate run validated up front (the CLI's and the pytest plugin's): thresholds, sets,
model, baseline and its protocol, before any image is processed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from .._files import check_output_dir
from .._format import did_you_mean
from ..errors import ConfigError, StressSetError, UnknownNameError, UsageError
from ..results import Results, effective_protocol, protocol_dict
from .baseline import Baseline, check_baseline_writable, load_baseline, write_baseline
from .thresholds import Thresholds, load_thresholds
from .verdicts import GateReport, bundled_names, judge

__all__ = ["GatePlan", "plan_gate"]

@dataclasses.dataclass
class GatePlan:
    """Everything a gate run needs, validated up front (see :func:`plan_gate`)."""

    thresholds: Thresholds
    sets: list[Any]
    source: Any  # colorfid.evaluation.ModelSource
    baseline: Baseline | None
    baseline_path: Path | None
    update_baseline: bool
    eval_kwargs: dict[str, Any]

    @property
    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]

    def known_sets(self) -> set[str]:
        return set(bundled_names()) | set(self.thresholds.stress_set_names()) | set(self.set_names)

    def get_set(self, name: str) -> Any:
        for s in self.sets:
            if s.name == name:
                return s
        raise UnknownNameError(f"set {name!r} is not in this gate run; sets: {self.set_names}")

    def evaluate(self, names: Sequence[str] | None = None, *, progress: bool | None = None) -> Results:
        from ..evaluation import evaluate

        chosen = self.sets if names is None else [self.get_set(n) for n in names]
        kw = dict(self.eval_kwargs)
        if progress is not None:
            kw["progress"] = progress
        return evaluate(self.source, chosen, protocol=self.thresholds.protocol, **kw)

    def judge(self, results: Results) -> GateReport:
        return judge(
            results, self.thresholds, self.baseline,
            check_regression=not self.update_baseline, known_sets=self.known_sets(),
        )

    def write_baseline(self, results: Results) -> Path | None:
        if not self.update_baseline or self.baseline_path is None:
            return None
        return write_baseline(results, self.baseline_path)


def _is_results_file(path: Path) -> bool:
    from .._files import load_json
    from ..errors import BaselineError
    from ..results import RESULTS_SCHEMA

    try:
        data = load_json(path, BaselineError, "baseline")
    except BaselineError:
        return False
    return isinstance(data, dict) and data.get("schema") == RESULTS_SCHEMA


def plan_gate(
    model: Any = None,
    *,
    predictions: str | os.PathLike | None = None,
    sets: Sequence[str | os.PathLike] | None = None,
    config: str | os.PathLike | Thresholds | None = None,
    search_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    baseline: str | os.PathLike | None = None,
    update_baseline: bool = False,
    allow_missing_baseline: bool | None = None,
    device: str | None = None,
    tile: int | None = None,
    overlap: int = 32,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    weights: str | None = None,
) -> GatePlan:
    """Validate a whole gate run before any image is processed: thresholds, sets, model,
    baseline (and its protocol). Every problem is a UsageError naming the file and key, or a
    CheckpointError for an unloadable checkpoint.

    ``model``: a checkpoint path, an nn.Module, or ``"identity"``; ``predictions``: a folder of
    saved outputs instead (see :func:`colorfid.evaluation.prediction_sets`). ``sets``: names or
    folders (default: the file's ``stress_sets``, else all bundled sets). ``weights``: which
    entry of a checkpoint to score (``"params_ema"``, the default, or ``"params"``; see
    :func:`colorfid.evaluation.resolve_model`).
    """
    from ..evaluation.sets import collect_sets, prediction_sets
    from ..evaluation.source import resolve_model

    if (model is None) == (predictions is None):
        raise UsageError("give exactly one of a checkpoint/model or a predictions folder")
    th = config if isinstance(config, Thresholds) else load_thresholds(config, search_dir=search_dir)
    if sets is not None:
        flat: list[Any] = []
        for s in sets:
            if isinstance(s, str) and "," in s:
                flat += [x.strip() for x in s.split(",") if x.strip()]
            else:
                flat.append(s)
        if any(isinstance(s, str) and not s.strip() for s in flat) or not flat:
            raise UsageError(f"a stress set name is empty (sets {list(sets)!r}); name the sets to run, or leave "
                             "the option out for the thresholds file's stress_sets")
        sets = flat
    if predictions is not None:
        stress_sets = prediction_sets(predictions, [str(s) for s in sets] if sets else None)
        source = resolve_model(None)
    else:
        specs = th.resolve_set_names(sets) if sets else (th.stress_sets or None)
        stress_sets = collect_sets(specs, kind="lq")  # a model runs on lq/, whatever else a set holds
        for s in stress_sets:
            if any(p.lq is None for p in s.pairs):
                raise StressSetError(
                    f"stress set {s.name!r} ({s.root}) has no lq/ images to run the model on"
                    + ("; it holds saved predictions (pred/): gate them with --predictions / --colorfid-predictions"
                       if s.kind == "pred" else "")
                )
        source = resolve_model(model, device=device, weights=weights)
    if not stress_sets:
        raise StressSetError("no stress sets to run")
    for s in stress_sets:
        if not list(s.pairs):
            raise StressSetError(f"stress set {s.name!r} ({s.root}) has no images")
    bpath: Path | None = Path(baseline).expanduser() if baseline is not None else th.baseline
    if update_baseline and bpath is None:
        raise UsageError("--update-baseline needs a baseline path (--baseline / --colorfid-baseline or baseline = ... in the thresholds file)")
    if update_baseline and bpath is not None and bpath.is_file() and _is_results_file(bpath):
        raise UsageError(
            f"--update-baseline would overwrite {str(bpath)!r}, a results file (it serves as a baseline as it is); "
            "give the baseline to write another path"
        )
    if update_baseline:
        check_baseline_writable(bpath)  # before the evaluation, not after it
    if predictions is None and use_cache:
        from ..evaluation.cache import default_cache_dir

        check_output_dir(default_cache_dir(cache_dir), "output cache folder",
                         hint="; choose another with --cache / $COLORFID_CACHE, or run with --no-cache")
    allow = th.allow_missing_baseline if allow_missing_baseline is None else bool(allow_missing_baseline)
    base = None
    if bpath is not None:
        if update_baseline and bpath.exists():
            base = load_baseline(bpath, allow_empty=True)  # corrupt: refused before anything is overwritten
        elif not update_baseline:
            base = load_baseline(bpath, allow_missing=allow)
    plan = GatePlan(
        thresholds=th, sets=stress_sets, source=source, baseline=base, baseline_path=bpath,
        update_baseline=update_baseline,
        eval_kwargs={"device": device, "tile": tile, "overlap": overlap, "cache_dir": cache_dir,
                     "use_cache": use_cache, "progress": progress},
    )
    known = plan.known_sets()
    for name in th.sets:
        if name not in known:
            raise UnknownNameError(
                f"{th.source}: key '{th.prefix}sets.{name}': unknown stress set {name!r}{did_you_mean(name, sorted(known))}; "
                f"known sets: {', '.join(sorted(known))} (a custom set folder must be listed in stress_sets or be among the sets run)"
            )
    base_proto = th.metric_protocol()
    for s in stress_sets:
        bounds = th.bounds_for(s.name)
        proto = protocol_dict(
            effective_protocol(base_proto, getattr(s, "protocol_overrides", None) or None, source=f"{s.root}/set.toml [protocol]")
        )
        if base is not None and not update_baseline:
            base.check_protocol(s.name, proto)
            for metric, b in bounds.items():
                base.require(s.name, metric, b.stat)  # before the evaluation: a missing value checks nothing
        limited = any(b.has_limits for b in bounds.values())
        regress = base is not None and not update_baseline and s.name in base.sets and bool(bounds)
        if not limited and not regress:
            raise ConfigError(
                f"{th.source}: no bound applies to set {s.name!r} ([{th.prefix}defaults] / [{th.prefix}sets.{s.name}] "
                "give it no max/min/target, and there is no baseline to regress against): the gate would pass vacuously"
            )
    return plan
