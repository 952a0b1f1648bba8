"""The ``colorfid`` command line.

Subcommands: ``info`` (versions, devices), and the ones later rooms add
(``eval``, ``report``, ``train``, ``demo``). Exit codes: 0 success / gate passed,
1 gate failed, 2 usage error (a :class:`colorfid.errors.UsageError` or bad arguments).
Each subcommand imports its room lazily, so ``colorfid --version`` stays instant.
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Callable, Sequence

from ._version import __version__
from .errors import ColorfidError, UsageError

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
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions and available devices")
    p.set_defaults(handler=_cmd_info)


# Each room adds one ``_add_<name>`` function here; build_parser() calls them in order.
_ADDERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


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
    except UsageError as exc:
        print(f"colorfid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ColorfidError as exc:
        print(f"colorfid {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
