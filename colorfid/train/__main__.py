"""``python -m colorfid.train -opt options.yml [--resume STATE | --auto-resume] [--finetune CKPT]``.

Also the entry point under ``torchrun --nproc_per_node N -m colorfid.train -opt options.yml``
(DDP: NCCL on GPUs, gloo on CPU). Exit codes: 0 done, 2 usage/configuration error, 3 training
stopped (:class:`~colorfid.errors.TrainingError`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The trainer's command-line options (shared with ``colorfid train``)."""
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
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (log lines only)")
    p.add_argument("--launcher", default=None, help=argparse.SUPPRESS)  # BasicSR habit; torchrun sets env
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run training from parsed arguments; errors propagate (the callers map them to exit codes)."""
    from .trainer import train

    train(args.opt, resume=args.resume, auto_resume=args.auto_resume, finetune=args.finetune,
          device=args.device, progress=args.progress)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import ColorfidError, exit_status

    parser = argparse.ArgumentParser(prog="python -m colorfid.train", description="Train NAFNet with colorfid losses.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ColorfidError as exc:
        return exit_status("colorfid train", exc)


if __name__ == "__main__":
    sys.exit(main())
