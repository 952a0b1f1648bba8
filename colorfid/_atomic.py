"""Atomic file writes — the one implementation every room uses (results, baselines, images,
checkpoints, training states, reports).

The bytes go to a temporary file in the target's folder (``.<name>.<random>.tmp``), which is
flushed and fsynced, given the permissions of the file it replaces (or, for a new file, those a
plain ``open`` would give: the umask's, not ``mkstemp``'s 0600, as checkpoints and reports are
for sharing), renamed over the final name with ``os.replace`` (atomic on POSIX and Windows), and
the folder is fsynced. A crash at any moment — SIGKILL included — leaves either the previous file
or the complete new one under the final name; on an exception the temporary file is removed (a
killed writer's temporary file stays: :func:`remove_stale_temporaries` clears them for writers
that hold a lock on the target).

A rename would replace any file, so the rules ``open`` would apply are applied first: a target
that is a symbolic link is written through (the file it points to is replaced, the link stays),
and a target without any write permission bit (``chmod a-w``) is refused with a
``PermissionError`` naming it, whoever runs the process — root included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_write_bytes", "fsync_dir", "write_target", "remove_stale_temporaries"]


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


def write_target(path: str | os.PathLike[str]) -> tuple[Path, int | None]:
    """Where an atomic write of ``path`` lands and the permission bits it keeps: the file a
    symbolic link points to (relative links resolved from the link's folder), and the mode of the
    file being replaced (None for a new file).

    Raises:
        PermissionError: the target exists and has no write permission bit (read-only);
        IsADirectoryError: the target is a folder.
    """
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    try:
        st = p.stat()
    except FileNotFoundError:
        return p, None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(p))
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o222:
        raise PermissionError(errno.EACCES, "read-only file (no write permission); colorfid does not replace it", str(p))
    return p, mode


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left (``.<name>.*.tmp``).
    Only call it while holding a lock that every writer of ``path`` takes."""
    p = Path(path)
    removed = []
    for tmp in p.parent.glob(f".{glob_escape(p.name)}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters quoted."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open ``path`` for writing atomically (``mode`` "wb" or "w"); the file appears on clean exit.

    The folder must exist (callers decide whether to create it and which error to raise). See
    the module docstring for links, modes and read-only targets (:func:`write_target`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    p, keep_mode = write_target(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    tmp = Path(tmp_name)
    try:
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if text else None, newline="\n" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, keep_mode if keep_mode is not None else 0o666 & ~_umask())
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
