"""Checkpoint history: one JSON line per evaluated checkpoint (aggregates, gate rows,
provenance), appended by :func:`append_history` and read back by :func:`load_history`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._files import json_default, read_text, utc_now
from ..errors import ConfigError
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


def append_history(path: str | os.PathLike[str], results: Any, gate_report: Any = None) -> dict[str, Any]:
    """Append one JSON line for ``results`` (and its gate verdict) to the history file ``path``.

    The file is JSON lines (one :func:`history_record` per line, UTF-8), created with its parent
    folder when missing; each line is written with a single ``write`` call and flushed, so
    concurrent appenders never interleave partial lines. Returns the record written.
    """
    rec = history_record(results, gate_report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(rec, allow_nan=False, default=json_default, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
    return rec


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history JSON-lines file (oldest first). Blank lines are skipped.

    Raises :class:`~colorfid.errors.ConfigError` naming the file and line for a missing file,
    a line that is not JSON, or a line of another schema/version.
    """
    path = Path(path)
    text = read_text(path, ConfigError, "history file")
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
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
