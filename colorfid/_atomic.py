"""Atomic file writes — the one implementation every room uses (results, baselines, images,
checkpoints, training states, reports).

The bytes go to a temporary file in the target's folder (``.<name>.<random>.tmp``), which is
flushed and fsynced, given the permissions a plain ``open`` would give (the umask's, not
``mkstemp``'s 0600: checkpoints and reports are for sharing), renamed over the final name with
``os.replace`` (atomic on POSIX and Windows), and the folder is fsynced. A crash at any moment —
SIGKILL included — leaves either the previous file or the complete new one under the final name;
on an exception the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_write_bytes", "fsync_dir"]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a folder so a rename inside it is durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open ``path`` for writing atomically (``mode`` "wb" or "w"); the file appears on clean exit.

    The folder must exist (callers decide whether to create it and which error to raise).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    p = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    tmp = Path(tmp_name)
    try:
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if text else None, newline="\n" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
        fsync_dir(p.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). Returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
