"""The ``colorfid`` command line.

Every subcommand's parser and handler: ``info`` (versions, devices), ``eval``, ``report``,
``train`` (also ``python -m colorfid.train``, :func:`train_main`), ``demo``, ``kernels``. Exit
codes (:func:`colorfid.errors.exit_code`, the one mapping): 0 success / gate passed, 1 gate
failed, 2 usage error (any :class:`colorfid.errors.ColorfidError` but a training stop, an
``OSError`` on a path, bad arguments), 3 training stopped. Outputs are checked before the long
work starts (an unwritable ``--json``, ``--report``, baseline, cache, history or kernel folder is
a usage error naming it, not a traceback after the evaluation). Each handler imports its room
lazily, so ``colorfid --version`` stays instant.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ._version import __version__
from .errors import ColorfidError, UsageError, exit_status

#: Largest tile side accepted (px): beyond it "tiles" are whole images anyway.
MAX_TILE = 1 << 16


def _tile_arg(text: str) -> int:
    """argparse type of ``--tile``: 0 (whole image) or a side in [32, MAX_TILE] pixels."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile must be a whole number of pixels, got {text!r}") from None
    if value != 0 and not 32 <= value <= MAX_TILE:
        raise argparse.ArgumentTypeError(f"tile must be 0 (whole image) or a side of 32 to {MAX_TILE} px, "
                                         f"got {text if len(text) < 20 else text[:12] + '...'}")
    return value


def _worst_k_arg(text: str) -> int:
    """argparse type of ``--worst-k``: an integer in [0, 1000]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"worst-k must be a whole number, got {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"worst-k must be between 0 and 1000, got {text if len(text) < 20 else text[:12] + '...'}")
    return value

Handler = Callable[[argparse.Namespace], int]


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import torch

    print(f"colorfid {__version__}")
    print(f"python   {platform.python_version()} ({sys.executable})")
    print(f"torch    {torch.__version__}")
    print(f"numpy    {numpy.__version__}")
    cuda = torch.cuda.is_available()
    print(f"cuda     {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}")
    mps = getattr(torch.backends, "mps", None)
    print(f"mps      {'yes' if mps is not None and mps.is_available() else 'no'}")
    print(f"threads  {torch.get_num_threads()}")
    from . import _aot

    print(f"kernels  {_aot.describe()}")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions and available devices")
    p.set_defaults(handler=_cmd_info)


# Each room adds one ``_add_<name>`` function here; build_parser() calls them in order.
_ADDERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


def _add_weights(p: argparse.ArgumentParser) -> None:
    """``--weights``: which entry of a BasicSR-layout checkpoint is scored (eval, report)."""
    p.add_argument("--weights", choices=("params_ema", "params"), default=None,
                   help="checkpoint entry to score: params_ema (default: the EMA weights a training validated; "
                   "params where the file has none) or params (the raw weights); results record the one used")


def _cmd_report(args: argparse.Namespace) -> int:
    """``colorfid report``: saved results and/or checkpoints -> one report (exit 0; with
    ``--gate`` 1 when the gate fails; 2 on usage errors).

    * ``results`` (JSON files, oldest first) and ``checkpoint`` (evaluated here with
      :func:`colorfid.evaluate` on ``sets``, their results saved under ``<out>/checkpoints/``)
      together form the checkpoints of the report; the last is detailed.
    * Gate: ``--config`` names a thresholds file; otherwise the one
      :func:`colorfid.gate.find_thresholds` finds is used when it applies to these results
      (a warning says why not otherwise); ``--no-gate`` switches the verdicts off; ``--gate``
      prints the verdict table as ``colorfid eval`` does and exits 1 when it fails.
    * ``--baseline``: a results JSON (values and baseline outputs) or a gate baseline JSON;
      ``--first-as-baseline``: the first of the checkpoints / results is the baseline.
    * ``--history``: read for the trends; with ``--append-history`` the checkpoints of this
      run are appended to it (the last one with its gate verdict).
    """
    from . import gate as _gate
    from .evaluation import evaluate
    from .report import append_history, load_history, write_report
    from .results import Results

    from ._files import check_output_dir, check_output_file, safe_name
    from .report import check_report_dir

    if not args.results and not args.checkpoint:
        raise UsageError("give results JSON files (colorfid report results.json ...) or --checkpoint a.pth b.pth ...")
    if args.first_as_baseline and args.baseline is not None:
        raise UsageError("--first-as-baseline and --baseline both name a baseline: give one")
    if args.first_as_baseline and len(args.results) + len(args.checkpoint) < 2:
        raise UsageError("--first-as-baseline needs at least two checkpoints / results: the baseline and one to judge")
    if args.gate and args.no_gate:
        raise UsageError("--gate and --no-gate contradict each other")
    out = Path(args.out)

    th = None
    explicit = args.config is not None or args.gate
    if not args.no_gate:
        found = Path(args.config) if args.config is not None else _gate.find_thresholds()
        th = _gate.load_thresholds(found) if found is not None else None
    if args.gate and th is None:
        raise UsageError("--gate needs a thresholds file (--config, ./colorfid.toml or [tool.colorfid]); none was found")
    # Outputs first: nothing is evaluated for a report that cannot be written.
    check_report_dir(out, gate=th is not None, full_size=args.full_size)
    if args.history is not None and args.append_history:
        check_output_file(args.history, "history file")
    if args.checkpoint:
        check_output_dir(out / "checkpoints", "results folder")

    base_obj: Any = None
    gate_base = None
    if args.baseline is not None:
        gate_base = _gate.load_baseline(args.baseline)  # a gate baseline or a results file
        base_obj = args.baseline
    elif th is not None and th.baseline is not None and not args.first_as_baseline:
        gate_base = _gate.load_baseline(th.baseline, allow_missing=True)
        base_obj = gate_base

    runs: list[Any] = [Results.load(p) for p in args.results]
    if args.checkpoint:
        sets = list(args.sets) if args.sets else (list(th.stress_sets) if th is not None and th.stress_sets else None)
        if sets and th is not None:
            sets = th.resolve_set_names(sets)
        saved: dict[str, str] = {}  # file name -> checkpoint sha256: two checkpoints never share a file
        for ckpt in args.checkpoint:
            print(f"colorfid report: evaluating {ckpt}", file=sys.stderr)
            res = evaluate(
                ckpt, sets, protocol=th.protocol if th is not None else None, device=args.device,
                tile=args.tile, cache_dir=args.cache, progress=None, weights=args.weights,
            )
            sha = str(res.provenance.get("checkpoint_sha256") or "")
            name = f"{safe_name(Path(ckpt).stem)}.json"
            if saved.get(name, sha) != sha:
                name = f"{safe_name(Path(ckpt).stem)}-{sha[:12]}.json"
            saved[name] = sha
            res.save(out / "checkpoints" / name)
            runs.append(res)
    if args.first_as_baseline:
        base_obj = runs[0]
        gate_base = _gate.Baseline.from_results(runs[0])

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
    if args.gate and verdict is not None:
        print(_gate.format_report(verdict, runs[-1]))
    print(index)
    if verdict is not None:
        failed = sum(1 for r in verdict.rows if r.failed)
        print(f"gate: {'PASS' if verdict.passed else 'FAIL'} ({failed} of {len(verdict.rows)} checks failed)")
        if args.gate:
            print(f"colorfid gate: {'PASSED' if verdict.passed else 'FAILED'}")
            return 0 if verdict.passed else 1
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML report from saved results or from checkpoints",
        description="Write one self-contained HTML report (index.html) from saved results JSON files "
        "and/or checkpoints evaluated now (--checkpoint a.pth b.pth ...); several checkpoints give trends.",
    )
    p.add_argument("results", nargs="*", metavar="RESULTS.json", help="saved results, oldest first (the last is detailed)")
    p.add_argument("--checkpoint", nargs="+", metavar="CKPT", default=[], help="checkpoints to evaluate, oldest first")
    p.add_argument("--sets", nargs="+", metavar="SET", default=None, help="stress sets (names or folders) for --checkpoint")
    p.add_argument("--out", default="colorfid-report", metavar="DIR", help="output folder (default: colorfid-report)")
    p.add_argument("--history", default=None, metavar="FILE", help="history JSON lines file to plot trends from")
    p.add_argument("--append-history", action="store_true", help="also append this run's checkpoints to --history")
    p.add_argument("--baseline", default=None, metavar="FILE", help="baseline: a results JSON or a gate baseline JSON")
    p.add_argument("--first-as-baseline", action="store_true",
                   help="the first checkpoint / results file is the baseline (outputs beside, regressions against it)")
    p.add_argument("--config", default=None, metavar="TOML", help="thresholds file for the verdicts (default: found as the gate does)")
    p.add_argument("--gate", action="store_true",
                   help="print the verdict table as `colorfid eval` does and exit 1 when the gate fails")
    p.add_argument("--no-gate", action="store_true", help="no verdicts, values only")
    p.add_argument("--metric", default="de00_p95", help="rank the worst images by this metric (default: de00_p95)")
    p.add_argument("--worst-k", type=_worst_k_arg, default=3, metavar="K", help="worst images shown per set (default: 3)")
    p.add_argument("--full-size", action="store_true", help="also write full-resolution images next to the report")
    _add_weights(p)
    p.add_argument("--device", default=None, help="device for --checkpoint (default: best available)")
    p.add_argument("--tile", type=_tile_arg, default=None, help="tile size for --checkpoint inference (0: whole image)")
    p.add_argument("--cache", default=None, metavar="DIR", help="output cache folder for --checkpoint")

    p.set_defaults(handler=_cmd_report)


_ADDERS.append(_add_report)


def _cmd_eval(args: argparse.Namespace) -> int:
    """``colorfid eval``: evaluate + gate, print the table; 0 pass / 1 fail (UsageError -> 2 in
    :func:`colorfid.cli.main`). ``args`` is the argparse namespace of ``colorfid eval``."""
    from ._files import check_output_file
    from .gate import format_report, plan_gate

    # Outputs first: an evaluation that cannot be saved is not started.
    if args.json:
        check_output_file(args.json, "results file (--json)")
    if args.report:
        from .report import check_report_dir

        check_report_dir(args.report, gate=True)
    model: Any = args.checkpoint
    if getattr(args, "identity", False):
        model = "identity"
    progress = False if args.no_progress else None
    plan = plan_gate(
        model,
        predictions=args.predictions,
        sets=args.sets,
        config=args.config,
        baseline=args.baseline,
        update_baseline=args.update_baseline,
        allow_missing_baseline=True if args.allow_missing_baseline else None,
        device=args.device,
        tile=args.tile,
        cache_dir=args.cache,
        use_cache=not args.no_cache,
        progress=progress,
        weights=args.weights,
    )
    src = plan.source
    what = (f"{src.checkpoint} (sha256 {src.sha256[:12]}, weights {src.weights or 'bare state dict'})" if src.checkpoint
            else (str(args.predictions) if args.predictions else src.name))
    print(f"colorfid eval: {what}; sets {', '.join(plan.set_names)}; thresholds {plan.thresholds.source}")
    results = plan.evaluate()
    report = plan.judge(results)
    print(format_report(report, results))
    if args.json:
        results.save(args.json, what="results file (--json)")
        print(f"results written: {args.json}")
    path = plan.write_baseline(results)
    if path is not None:
        print(f"baseline written: {path} (sets {', '.join(results.set_names)})")
    if args.report:
        try:
            from .report import write_report
        except ImportError as exc:
            from .errors import MissingDependencyError  # noqa: PLC0415

            raise MissingDependencyError(f"--report needs colorfid.report: {exc}") from None
        if plan.baseline is not None:
            index = write_report(results, args.report, gate_report=report, baseline=plan.baseline)
        else:
            index = write_report(results, args.report, gate_report=report)
        print(f"report: {index}")
    print(f"colorfid gate: {'PASSED' if report.passed else 'FAILED'}")
    return 0 if report.passed else 1


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on stress sets and gate it (exit 0 pass / 1 fail / 2 usage error)",
        description="Run a checkpoint (or saved predictions) on stress sets, judge the colour metrics "
        "against a thresholds file and an optional baseline, print the table. Exit 0 pass, 1 fail, "
        "2 usage error.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="PATH", help="checkpoint to evaluate (.pth / .safetensors)")
    src.add_argument("--predictions", metavar="DIR", help="gate saved predictions instead of a model")
    src.add_argument("--identity", action="store_true", help="the identity model (LQ passed through; a demo)")
    p.add_argument("--sets", nargs="+", metavar="SET", help="stress sets: bundled names or folders (default: "
                   "the thresholds file's stress_sets, else all bundled sets)")
    p.add_argument("--config", metavar="FILE", help="thresholds file (default: ./colorfid.toml, then "
                   "[tool.colorfid] in ./pyproject.toml, then the bundled golden/colorfid.toml)")
    p.add_argument("--baseline", metavar="FILE", help="baseline JSON to check regressions against")
    p.add_argument("--update-baseline", action="store_true", help="write the baseline from this run "
                   "(the sets that ran; others are kept)")
    p.add_argument("--allow-missing-baseline", action="store_true", help="a missing baseline is not an error")
    p.add_argument("--json", metavar="OUT", help="write the results (schema colorfid.results v1) here")
    p.add_argument("--report", metavar="DIR", help="write the HTML report into DIR")
    _add_weights(p)
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--tile", type=_tile_arg, default=None, help="tile size for large images (default: automatic; 0: whole image)")
    p.add_argument("--cache", metavar="DIR", help="output cache (default $COLORFID_CACHE or ./.colorfid_cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the output cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p.set_defaults(handler=_cmd_eval)


_ADDERS.append(_add_eval)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    """The trainer's options (``colorfid train`` and ``python -m colorfid.train``)."""
    p.add_argument("-opt", "--opt", dest="opt", required=True, metavar="OPTIONS.yml",
                   help="options file in the NAFNet/BasicSR YAML layout")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="STATE", default=None,
                   help="continue exactly from a training state (training_states/{iter}.state)")
    g.add_argument("--auto-resume", "--auto_resume", dest="auto_resume", action="store_true", default=None,
                   help="resume from the newest state of this experiment if there is one")
    g.add_argument("--finetune", metavar="CKPT", default=None,
                   help="start from these weights with a fresh optimiser and schedule at iteration 0")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    p.add_argument("--scale-schedule", dest="scale_schedule", action="store_true", default=None,
                   help="scale the learning-rate and loss schedules to train.total_iter when it is shorter than "
                   "them (train.scale_schedule); otherwise such a run warns")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (log lines only)")
    p.add_argument("--launcher", default=None, help=argparse.SUPPRESS)  # BasicSR habit; torchrun sets env
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def _cmd_train(args: argparse.Namespace) -> int:
    """``colorfid train``: errors propagate (the callers map them to exit codes)."""
    from .train.trainer import train

    train(args.opt, resume=args.resume, auto_resume=args.auto_resume, finetune=args.finetune,
          device=args.device, progress=args.progress, scale_schedule=args.scale_schedule)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train NAFNet with colorfid losses from a BasicSR-style YAML (fine-tune, resume, DDP)",
        description="Train from an options YAML in the NAFNet/BasicSR layout (see options/). "
        "--finetune starts from weights with a fresh optimiser at iteration 0; --resume continues a "
        "training state exactly; --auto-resume resumes the newest state of the experiment if any. "
        "DDP: torchrun --nproc_per_node N -m colorfid.train -opt options.yml. Exit 0 done, "
        "2 usage/configuration error, 3 training stopped (too many non-finite steps).",
    )
    _train_arguments(p)
    p.set_defaults(handler=_cmd_train)


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m colorfid.train`` (also under ``torchrun``): ``colorfid train`` as a module."""
    parser = argparse.ArgumentParser(prog="python -m colorfid.train", description="Train NAFNet with colorfid losses.")
    _train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _cmd_train(args)
    except (ColorfidError, OSError) as exc:
        return exit_status("colorfid train", exc)


_ADDERS.append(_add_train)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .report import check_report_dir

    check_report_dir(args.out, gate=True)  # before three models are evaluated
    check_report_dir(Path(args.out) / "demo_l1", gate=True)

    run_demo(args.out, device=args.device, progress=False if args.no_progress else None, update_baseline=args.update_baseline)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled demo: three NAFNet checkpoints and the identity through the gate, with reports",
        description="Evaluate the identity model and golden/checkpoints/demo_l1.pth, demo_color.pth and "
        "demo_color_jitter.pth on the bundled stress sets, gate them with golden/demo.toml against "
        "golden/baselines/demo_l1.json, print one table of the gated numbers with per-set verdicts and write "
        "the HTML reports.",
    )
    p.add_argument("--out", default="reports/demo", help="report folder (default: reports/demo)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--update-baseline", action="store_true", help="rewrite golden/baselines/demo_l1.json from demo_l1")
    p.set_defaults(handler=_cmd_demo)


_ADDERS.insert(1, _add_demo)


def _cmd_kernels(args: argparse.Namespace) -> int:
    """``colorfid kernels [status|build|clear]``: the fused CPU kernels of colorfid._aot."""
    from . import _aot
    from .metrics import metric_kernels

    if args.action == "build":
        import torch

        from ._files import check_output_dir

        check_output_dir(_aot.kernel_dir(), "kernel folder", hint=" (set COLORFID_KERNEL_DIR to a writable folder)")

        print(f"colorfid kernels: building into {_aot.kernel_dir()} (torch {torch.__version__}; "
              "once per machine and version, ~100 s on 2 cores; needs a C++ compiler)", flush=True)
        done = _aot.build(args.names or None, force=args.force, log=lambda line: print(line, flush=True))
        built = sum(r["status"] == "built" for r in done)
        print(f"colorfid kernels: {built} built, {len(done) - built} already present")
        return 0
    if args.action == "clear":
        removed = _aot.clear()
        print(f"colorfid kernels: removed {len(removed)} file(s) from {_aot.kernel_dir()}")
        return 0
    ok, why = _aot.supported()
    print(f"kernel folder: {_aot.kernel_dir()}" + ("" if _aot.enabled() else " (disabled: COLORFID_KERNELS=0)"))
    if not ok:
        print(f"unsupported: {why}")
    for st in _aot.status():
        state = f"built ({st['bytes'] / 1e6:.1f} MB)" if st["built"] else "not built"
        print(f"  {st['name']:<22} {state:<16} {st['description']}")
    used = metric_kernels()
    print(f"image_metrics (float64, CPU) runs: {used}" + ("" if used == "fused" else "  -> `colorfid kernels build` to fuse it"))
    return 0


def _add_kernels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels",
        help="build / show / clear the fused CPU kernels of the metrics (optional; metrics ~2x faster)",
        description="colorfid's per-image metrics run as eager PyTorch by default. `colorfid kernels build` "
        "compiles the same functions once per machine with AOTInductor (torch.export; needs a C++ "
        "compiler, ~100 s on 2 cores) into $COLORFID_KERNEL_DIR (default ~/.cache/colorfid/kernels); "
        "image_metrics, evaluate, `colorfid eval` and the pytest plugin then use them automatically "
        "(float64 on CPU; COLORFID_KERNELS=0 turns them off). Each kernel is checked against the eager "
        "path before it is kept.",
    )
    p.add_argument("action", nargs="?", choices=("status", "build", "clear"), default="status",
                   help="status (default), build, or clear")
    p.add_argument("names", nargs="*", metavar="NAME", help="with build: only these kernels")
    p.add_argument("--force", action="store_true", help="with build: rebuild kernels that are present")
    p.set_defaults(handler=_cmd_kernels)


_ADDERS.append(_add_kernels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorfid",
        description="Colour-fidelity metrics, gate, reports and training for image-restoration models.",
    )
    parser.add_argument("--version", action="version", version=f"colorfid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _ADDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except (ColorfidError, OSError) as exc:  # an OSError reaching here names a path: never "gate failed"
        return exit_status(f"colorfid {args.command}", exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
