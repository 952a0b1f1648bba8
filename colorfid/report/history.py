"""Checkpoint history: one JSON line per evaluated checkpoint (aggregates, gate rows,
provenance), appended by :func:`append_history` and read back by :func:`load_history`.

Appends take an exclusive lock (``.<name>.lock`` beside the file) and write each line with one
``write`` call, so concurrent appenders never interleave; an append killed half-way leaves an
incomplete last line, which readers skip (with a warning) and the next append cuts away."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from .._files import check_output_file, json_default, os_reason, read_text, utc_now
from .._lock import file_lock, lock_path_for
from ..errors import ColorfidWarning, ConfigError, OutputError
from .inputs import gate_dict, label_of, results_dict, step_of

__all__ = ["HISTORY_SCHEMA", "HISTORY_SCHEMA_VERSION", "history_record", "append_history", "load_history"]

#: ``schema`` field of a history line.
HISTORY_SCHEMA = "colorfid.history"


HISTORY_SCHEMA_VERSION = 1


def history_record(results: Any, gate_report: Any = None) -> dict[str, Any]:
    """One history line (plain JSON types) for a Results: provenance, aggregates, gate rows.

    Keys: ``schema`` (``"colorfid.history"``), ``schema_version`` (1), ``created`` (the results'
    creation time), ``recorded`` (now, ISO 8601 UTC), ``label``, ``step`` (from the checkpoint
    name, or null), ``provenance``, ``protocol``, ``sets`` ({set: {metric: {mean, median, tail95,
    worst, n}}}) and ``gate`` ({"passed", "rows"} or null).
    """
    data, _ = results_dict(results)
    prov = dict(data.get("provenance") or {})
    return {
        "schema": HISTORY_SCHEMA,
        "schema_version": HISTORY_SCHEMA_VERSION,
        "created": data.get("created"),
        "recorded": utc_now(),
        "label": label_of(prov, "run"),
        "step": step_of(prov.get("checkpoint")),
        "provenance": prov,
        "protocol": data.get("protocol") or {},
        "sets": {name: dict(s.get("aggregate") or {}) for name, s in data["sets"].items()},
        "gate": gate_dict(gate_report),
    }


def _cut_torn_tail(fd: int) -> None:
    """Truncate the file after its last newline (what a killed append left), under the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        block = os.pread(fd, pos - start, start)
        i = block.rfind(b"\n")
        if i >= 0:
            os.ftruncate(fd, start + i + 1)
            return
        pos = start
    os.ftruncate(fd, 0)


def append_history(path: str | os.PathLike[str], results: Any, gate_report: Any = None) -> dict[str, Any]:
    """Append one JSON line for ``results`` (and its gate verdict) to the history file ``path``.

    The file is JSON lines (one :func:`history_record` per line, UTF-8), created with its parent
    folder when missing. Under an exclusive lock the line is written with a single ``write`` call
    and fsynced, so concurrent appenders never interleave; a torn last line left by a killed
    append is cut first. Returns the record written.

    Raises:
        OutputError: the file cannot be written (naming it).
    """
    rec = history_record(results, gate_report)
    path = Path(path)
    line = (json.dumps(rec, allow_nan=False, default=json_default, ensure_ascii=False) + "\n").encode("utf-8")
    check_output_file(path, "history file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(lock_path_for(path)):
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                _cut_torn_tail(fd)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
    except (OSError, TimeoutError) as exc:
        raise OutputError(f"history file {str(path)!r} cannot be written: {os_reason(exc)}") from None
    return rec


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history JSON-lines file (oldest first). Blank lines are skipped.

    Raises :class:`~colorfid.errors.ConfigError` naming the file and line for a missing file,
    a line that is not JSON, or a line of another schema/version. An incomplete last line (no
    newline: an append that was killed) is skipped with a warning.
    """
    path = Path(path)
    text = read_text(path, ConfigError, "history file")
    lines = text.splitlines()
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            if no == len(lines) and not text.endswith("\n"):  # an append killed half-way
                warnings.warn(f"{path}:{no}: skipping an incomplete last line (an interrupted append)",
                              ColorfidWarning, stacklevel=2)
                continue
            raise ConfigError(f"{path}:{no}: not a JSON line ({exc})") from None
        if not isinstance(rec, dict) or rec.get("schema") != HISTORY_SCHEMA:
            got = rec.get("schema") if isinstance(rec, dict) else type(rec).__name__
            raise ConfigError(f"{path}:{no}: 'schema' is {got!r}, expected {HISTORY_SCHEMA!r}")
        if rec.get("schema_version") != HISTORY_SCHEMA_VERSION:
            raise ConfigError(
                f"{path}:{no}: unsupported schema_version {rec.get('schema_version')!r} "
                f"(this colorfid reads {HISTORY_SCHEMA_VERSION})"
            )
        if not isinstance(rec.get("sets"), dict):
            raise ConfigError(f"{path}:{no}: key 'sets' is missing or not a mapping")
        out.append(rec)
    return out
