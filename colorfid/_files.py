"""File and format helpers shared by the rooms that read and write files: reading a text or
JSON file (or raising the room's own error naming the file), atomic JSON and text writes,
plain JSON-able values, file hashes and timestamps."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._atomic import atomic_open, atomic_write_bytes

__all__ = [
    "utc_now", "read_text", "parse_json", "load_json", "atomic_write_json", "atomic_write_text", "json_default",
    "plain", "sha256_file",
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


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON (no NaN) to ``path`` atomically (temp file + rename),
    creating its folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, (json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8"))
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (readers never see half a file), creating its folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(p, "w") as fh:
        fh.write(text)
    return p


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
