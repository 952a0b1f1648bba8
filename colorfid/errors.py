"""Exception and warning types of colorfid.

Every error colorfid raises on bad input derives from :class:`ColorfidError` and
names what is wrong: the file, the shape, the key. Usage errors (bad configuration,
unknown names, missing baselines, outputs that cannot be written) derive from
:class:`UsageError`.

Exit codes, one mapping for every command and the pytest plugin (:func:`exit_code`,
:func:`pytest_exit_code`): 0 passed / done, 1 the gate failed (only ever a verdict), 2 a usage
error -- any :class:`ColorfidError` but a :class:`TrainingError`, and any ``OSError`` reaching a
command (a file or folder that cannot be read or written) --, 3 training stopped. Under pytest a
usage error is pytest's own usage-error code, 4.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = [
    "EXIT_PASSED",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_TRAINING",
    "PYTEST_EXIT_USAGE",
    "exit_code",
    "pytest_exit_code",
    "exit_status",
    "describe",
    "ColorfidError",
    "ColorfidWarning",
    "ShapeError",
    "DTypeError",
    "RangeError",
    "ImageReadError",
    "ImageWriteError",
    "ImageTooLargeError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "UsageError",
    "ConfigError",
    "OutputError",
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


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than the limit (``COLORFID_MAX_PIXELS``); refused from its header,
    before any pixel is decoded."""


class CheckpointError(ColorfidError):
    """A checkpoint cannot be read or does not fit the model (missing/unexpected keys, shapes)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle would execute code; it was refused and nothing ran."""


class UsageError(ColorfidError, ValueError):
    """The user asked for something that cannot be done as asked (bad config, unknown name...)."""


class ConfigError(UsageError):
    """A configuration file or option (thresholds TOML, trainer YAML) is malformed."""


class OutputError(UsageError):
    """An output (results or report file, baseline, cache, history, kernel or experiment folder)
    cannot be written where it was asked for: the message names the path and why."""


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


EXIT_PASSED = 0
#: The gate judged and failed: the only way to end in 1.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TRAINING = 3
#: pytest's own code for a usage error (``pytest.ExitCode.USAGE_ERROR``).
PYTEST_EXIT_USAGE = 4


def exit_code(exc: BaseException) -> int:
    """The command-line exit code of an error that ended a command: 3 for a
    :class:`TrainingError`, 2 for any other :class:`ColorfidError` and for an ``OSError`` (a path
    that cannot be read or written is the user's to fix, never a failed gate). Anything else is a
    bug in colorfid and is not mapped (ValueError)."""
    if isinstance(exc, TrainingError):
        return EXIT_TRAINING
    if isinstance(exc, (ColorfidError, OSError)):
        return EXIT_USAGE
    raise ValueError(f"no exit code for {type(exc).__name__}: it is not an error colorfid reports to users")


def pytest_exit_code(exc: BaseException) -> int:
    """The pytest exit code of an error surfacing in the plugin: pytest's usage error (4) for
    every error :func:`exit_code` maps to 2."""
    code = exit_code(exc)
    return PYTEST_EXIT_USAGE if code == EXIT_USAGE else code


def describe(exc: BaseException) -> str:
    """``"<Type>: <message>"``: how commands and the plugin name an error (the type tells a usage
    error from a refused checkpoint; the message names the file and key)."""
    return f"{type(exc).__name__}: {exc}"


def exit_status(prog: str, exc: BaseException, stream: TextIO | None = None) -> int:
    """Report an error to a command-line user and return the process exit code (:func:`exit_code`).

    Printed as ``prog: error: <Type>: <message>`` for usage errors (argparse's form) and
    ``prog: <Type>: <message>`` otherwise.
    """
    out = stream if stream is not None else sys.stderr
    code = exit_code(exc)
    if isinstance(exc, UsageError) or (isinstance(exc, OSError) and not isinstance(exc, ColorfidError)):
        print(f"{prog}: error: {describe(exc)}", file=out)
    else:
        print(f"{prog}: {describe(exc)}", file=out)
    return code
