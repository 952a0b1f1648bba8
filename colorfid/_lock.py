"""Exclusive advisory locks, so that processes updating one file or folder (a baseline, a report
folder, a history file) take turns: each read-merge-write happens whole, under the lock.

A lock is a sidecar file (``.<name>.lock`` beside a file, or a ``lock`` file inside a folder
colorfid owns), created on first use and never deleted (deleting a lock file races with a
process that has just opened it; an empty file costs nothing).

* POSIX: ``fcntl.flock`` on the lock file, exclusive. The kernel releases it when the holder
  exits, SIGKILL included, so a killed writer never leaves a stale lock. On Linux NFS clients
  flock is emulated with byte-range locks (NFSv4: seen by every client).
* Windows: ``msvcrt.locking`` on the lock file's first byte; also released when the holder exits.
* Neither available: no locking (a ``ColorfidWarning`` says so once); writes stay atomic, but
  concurrent updates of one file may lose one writer's part.

The locks are advisory: they order colorfid's writers, not other programs. Waiting is bounded:
past ``timeout`` seconds :class:`TimeoutError` names the lock file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import warnings
from pathlib import Path
from typing import Iterator

__all__ = ["DEFAULT_TIMEOUT", "file_lock", "lock_path_for"]

#: Seconds a writer waits for another before giving up.
DEFAULT_TIMEOUT = 600.0

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt as _msvcrt  # type: ignore[import-not-found]
except ImportError:
    _msvcrt = None

_warned = False


def lock_path_for(path: str | os.PathLike[str]) -> Path:
    """The sidecar lock file of ``path``: ``<folder>/.<name>.lock``."""
    p = Path(path)
    return p.parent / f".{p.name}.lock"


def _try_lock(fd: int) -> bool:
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
    try:  # pragma: no cover - Windows
        _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
        return True
    except OSError:  # pragma: no cover
        return False


def _unlock(fd: int) -> None:
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def file_lock(lock_path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Path]:
    """Hold an exclusive lock on ``lock_path`` (created if missing; its folder must exist).

    Raises:
        OSError: the lock file cannot be created or opened (e.g. a read-only folder);
        TimeoutError: another process held it for more than ``timeout`` seconds.
    """
    global _warned
    p = Path(lock_path)
    if _fcntl is None and _msvcrt is None:  # pragma: no cover - neither POSIX nor Windows
        if not _warned:
            from .errors import ColorfidWarning

            warnings.warn("colorfid: no file locking on this platform; concurrent updates of one "
                          "baseline or report may lose one writer's part", ColorfidWarning, stacklevel=3)
            _warned = True
        yield p
        return
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        if not p.is_file():
            raise
        fd = os.open(p, os.O_RDONLY)  # a lock file made read-only still locks (flock)
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"another process has held this lock for more than {timeout:g} s",
                                   str(p))
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield p
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
