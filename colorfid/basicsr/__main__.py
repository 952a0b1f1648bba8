"""``python -m colorfid.basicsr -opt options.yml [BasicSR's own arguments]``.

Registers colorfid's losses, metrics, model type and (upstream) NAFNet into the importable BasicSR,
checks the YAML for what BasicSR would get wrong silently (:func:`colorfid.basicsr.check_options`),
then runs BasicSR's own training pipeline with the command line unchanged:

* upstream BasicSR: ``basicsr.train.train_pipeline(root)``, ``root`` = the current directory
  (``experiments/<name>``, ``tb_logger/<name>`` go there; BasicSR's ``train.py`` uses its checkout);
* NAFNet's fork: ``basicsr.train.main()`` (its ``experiments/`` stay in its checkout). Without
  ``--launcher``, a one-process group is opened first (gloo on CPU, NCCL on a GPU), because the
  fork's validation always reduces over a process group.

DDP works as with BasicSR's ``train.py``: ``torchrun --nproc_per_node 4 -m colorfid.basicsr -opt
x.yml --launcher pytorch``. Exit codes: 0 done, 2 usage/configuration error (colorfid's checks,
or basicsr missing).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

PROG = "python -m colorfid.basicsr"


def _opt_path(argv: Sequence[str]) -> tuple[str, str]:
    p = argparse.ArgumentParser(prog=PROG, add_help=False)
    p.add_argument("-opt", "--opt", dest="opt", required=True)
    p.add_argument("--launcher", default="none")
    args, _ = p.parse_known_args(list(argv))
    return args.opt, args.launcher


def _single_process_group() -> None:
    """NAFNet's fork validates through ``torch.distributed.reduce`` even without a launcher."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def main(argv: Sequence[str] | None = None) -> int:
    import yaml

    from ..errors import ColorfidError, ConfigError, exit_status
    from .register import check_options, register_all

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        try:
            opt_file, launcher = _opt_path(argv)
        except SystemExit:
            raise ConfigError("missing -opt OPTIONS.yml") from None
        added = register_all()
        which = added["flavour"][0]
        try:
            with open(opt_file, encoding="utf-8") as fh:
                opt = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read {opt_file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{opt_file}: not valid YAML ({exc})") from None
        if not isinstance(opt, dict):
            raise ConfigError(f"{opt_file}: expected a YAML mapping")
        check_options(opt, flavour=which, source=opt_file)
    except (ColorfidError, OSError) as exc:  # the one mapping (colorfid.errors.exit_code)
        return exit_status(PROG, exc)
    sys.argv = [PROG] + argv  # BasicSR parses sys.argv itself
    if which == "upstream":
        from basicsr.train import train_pipeline  # type: ignore[import-not-found]

        train_pipeline(os.getcwd())
    else:
        if launcher == "none" and opt.get("val") is not None:
            _single_process_group()
        from basicsr.train import main as fork_main  # type: ignore[import-not-found]

        fork_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
