"""Exception and warning types of colorfid.

Every error colorfid raises on bad input derives from :class:`ColorfidError` and
names what is wrong: the file, the shape, the key. Usage errors (bad configuration,
unknown names, missing baselines) derive from :class:`UsageError`; the pytest
plugin turns them into pytest's usage-error exit code (4) and the CLI into exit 2.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = [
    "exit_status",
    "ColorfidError",
    "ColorfidWarning",
    "ShapeError",
    "DTypeError",
    "RangeError",
    "ImageReadError",
    "ImageWriteError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "UsageError",
    "ConfigError",
    "UnknownNameError",
    "BaselineError",
    "StressSetError",
    "MissingDependencyError",
    "TrainingError",
    "KernelError",
]


class ColorfidError(Exception):
    """Base class of every exception colorfid raises on purpose."""


class ColorfidWarning(UserWarning):
    """Base class of colorfid's warnings (alpha dropped, unknown option keys, ...)."""


class ShapeError(ColorfidError, ValueError):
    """A tensor has the wrong shape (e.g. channel dimension not 3)."""


class DTypeError(ColorfidError, TypeError):
    """A tensor has a dtype the function does not accept (e.g. uint8 where float is needed)."""


class RangeError(ColorfidError, ValueError):
    """Values lie outside the documented range (e.g. sRGB outside [0, 1])."""


class ImageReadError(ColorfidError, OSError):
    """An image file is missing, corrupt, truncated or in an unsupported format."""


class ImageWriteError(ColorfidError, OSError):
    """An image could not be written."""


class CheckpointError(ColorfidError):
    """A checkpoint cannot be read or does not fit the model (missing/unexpected keys, shapes)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle would execute code; it was refused and nothing ran."""


class UsageError(ColorfidError, ValueError):
    """The user asked for something that cannot be done as asked (bad config, unknown name...)."""


class ConfigError(UsageError):
    """A configuration file or option (thresholds TOML, trainer YAML) is malformed."""


class UnknownNameError(UsageError):
    """A metric, set, loss or option name is not known. The message lists the known ones."""


class BaselineError(UsageError):
    """A baseline file is missing, corrupt, or was measured under a different protocol."""


class StressSetError(UsageError):
    """A stress set folder is malformed (unmatched names, size mismatch, empty, unreadable)."""


class MissingDependencyError(ColorfidError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


class TrainingError(ColorfidError, RuntimeError):
    """Training cannot continue (e.g. too many non-finite steps in a row)."""


class KernelError(ColorfidError, RuntimeError):
    """A fused kernel could not be built (old torch, no C++ compiler) or failed its self-check."""


def exit_status(prog: str, exc: ColorfidError, stream: TextIO | None = None) -> int:
    """Report a colorfid error to a command-line user and return the process exit code.

    One mapping for every entry point (``colorfid ...``, ``python -m colorfid.train``): 2 for a
    usage error (printed as ``prog: error: ...``) and for any other colorfid error, 3 for a
    :class:`TrainingError` (training stopped).
    """
    out = stream if stream is not None else sys.stderr
    if isinstance(exc, UsageError):
        print(f"{prog}: error: {exc}", file=out)
        return 2
    print(f"{prog}: {type(exc).__name__}: {exc}", file=out)
    return 3 if isinstance(exc, TrainingError) else 2
