"""File and format helpers shared by the rooms that read and write files: reading a text or
JSON file (or raising the room's own error naming the file), atomic JSON and text writes (an
:class:`~colorfid.errors.OutputError` naming the file when they cannot be done), checking up
front that an output can be written, file-system-safe names, plain JSON-able values, file hashes
and timestamps."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._atomic import atomic_open, atomic_write_bytes, write_target
from .errors import OutputError, UsageError

__all__ = [
    "env_count",
    "utc_now", "read_text", "parse_json", "load_json", "atomic_write_json", "atomic_write_text", "json_default",
    "plain", "sha256_file", "output_problem", "check_output_file", "check_output_dir", "os_reason", "safe_name",
]


def utc_now() -> str:
    """Now, as ISO 8601 UTC to the second (``2026-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_text(path: str | os.PathLike, error: type[Exception], what: str, *, missing: str | None = None) -> str:
    """The UTF-8 text of ``path``, or ``error`` naming ``what`` and the file: ``"<what> '<path>'
    not found"`` (or ``missing``) when it does not exist, ``"... cannot be read: <why>"``
    otherwise."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(missing or f"{what} {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(p)!r} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None


def parse_json(text: str, path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """``json.loads(text)``, or ``error`` naming ``what`` and ``path`` when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not valid JSON: {exc}") from None


def load_json(path: str | os.PathLike, error: type[Exception], what: str, *, missing: str | None = None) -> Any:
    """:func:`read_text` then :func:`parse_json`."""
    return parse_json(read_text(path, error, what, missing=missing), path, error, what)


def os_reason(exc: OSError) -> str:
    """An OSError's reason without its repr noise (``Permission denied``, ``Not a directory``)."""
    return str(getattr(exc, "strerror", None) or exc)


def atomic_write_json(path: str | os.PathLike, data: Any, *, what: str = "file", error: type[Exception] = OutputError) -> Path:
    """Write ``data`` as indented JSON (no NaN) to ``path`` atomically (temp file + rename),
    creating its folder; ``error`` (default :class:`OutputError`) naming ``what`` and the path when
    it cannot be written."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n",
                             what=what, error=error)


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "file", error: type[Exception] = OutputError) -> Path:
    """Write ``text`` to ``path`` atomically (readers never see half a file), creating its folder;
    ``error`` naming ``what`` and the path when it cannot be written (read-only file, a folder in
    the way, no permission, disk full...)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(p, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise error(f"{what} {str(p)!r} cannot be written: {os_reason(exc)}"
                    + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(p) else "")) from None
    return p


def _nearest_existing(p: Path) -> Path:
    q = p
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    return q


def _probe_dir(d: Path) -> str | None:
    """Why files cannot be created in the existing folder ``d`` (None: they can). A real probe
    (create and remove a temporary file): permission bits do not stop root, immutable or
    read-only mounted folders stop everyone."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".colorfid-probe-", dir=d)
    except OSError as exc:
        return f"{str(d)!r} is not writable: {os_reason(exc)}"
    os.close(fd)
    os.unlink(tmp)
    return None


def output_problem(path: str | os.PathLike, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written as a file (``folder=False``) or used as an output folder
    (``folder=True``), or None. Nothing is created: missing folders are judged by the nearest
    existing one."""
    p = Path(path).expanduser()
    if folder:
        if os.path.lexists(p) and not p.is_dir():
            return f"{str(p)!r} is a file, not a folder" if p.exists() else f"{str(p)!r} is a broken link"
        base = _nearest_existing(p)
    else:
        if p.is_dir():
            return f"{str(p)!r} is a folder, not a file"
        try:
            target, _mode = write_target(p)
        except OSError as exc:
            return f"{str(p)!r}: {os_reason(exc)}"
        base = _nearest_existing(target.parent)
    if not base.is_dir():
        return f"{str(base)!r} is a file, not a folder"
    return _probe_dir(base)


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """:class:`OutputError` (naming ``what`` and the path) unless ``path`` can be written as a file."""
    why = output_problem(path, folder=False)
    if why is not None:
        raise OutputError(f"{what} {str(path)!r} cannot be written: {why}")
    return Path(path)


def check_output_dir(path: str | os.PathLike, what: str, *, hint: str = "") -> Path:
    """:class:`OutputError` (naming ``what`` and the path) unless files can be written in the
    folder ``path`` (created later if missing)."""
    why = output_problem(path, folder=True)
    if why is not None:
        raise OutputError(f"{what} {str(path)!r} cannot be written: {why}{hint}")
    return Path(path)


_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(name: str) -> str:
    """A file-system-safe stand-in for ``name`` that never collides with another name's: ``name``
    itself when it is lower-case ``[a-z0-9._-]`` (at most 100 characters, not a Windows device
    name); otherwise the name with other characters as ``_``, then ``~`` and 10 hex digits of its
    sha256 (``"a b"`` -> ``"a_b~8e0f..."``, distinct from ``"a_b"``; ``"A"`` and ``"a"`` stay
    distinct on case-insensitive file systems)."""
    if _SAFE.fullmatch(name) and name.split(".")[0] not in _RESERVED:
        return name
    keep = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "_"
    return f"{keep}~{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for paths and NumPy scalars."""
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data: mappings with str keys, lists, paths as str, NumPy scalars as
    Python numbers, non-finite floats as None."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (OSError propagates)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def env_count(name: str, default: int, unit: str, example: str) -> int:
    """A positive whole-number setting from the environment variable ``name`` (``default`` when it
    is unset or blank; ``"5e8"`` is read as 500000000). :class:`UsageError` naming the variable,
    the ``unit`` and an ``example`` setting otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        ok = value.is_integer() and value >= 1
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        raise UsageError(f"{name}={raw!r}: expected a positive whole number of {unit} "
                         f"(default {default}; e.g. {name}={example})")
    return int(value)
