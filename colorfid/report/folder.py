"""The report folder: every report is written into a staging folder and swapped in at once, and
nothing colorfid did not write is ever deleted or overwritten.

Layout of ``DIR`` (the ``--out`` / ``--report`` folder)::

    DIR/index.html   -> .colorfid-report/current/index.html     links colorfid made once
    DIR/results.json -> .colorfid-report/current/results.json
    DIR/gate.json    -> .colorfid-report/current/gate.json      (absent when there is no verdict)
    DIR/full         -> .colorfid-report/current/full           (absent without --full-size)
    DIR/.colorfid-report/current -> r-<id>     the one pointer a new report swaps (atomically)
    DIR/.colorfid-report/r-<id>/               the complete report: index.html, results.json,
                                               gate.json, full/
    DIR/.colorfid-report/lock                  one writer at a time (colorfid._lock)

A writer builds ``.colorfid-report/staging-<random>/`` completely (files fsynced), renames it to
``r-<id>``, makes the top-level links that the report needs (each resolves through ``current``,
so one that is new dangles -- reads as absent -- until the swap), then replaces ``current`` with
``os.replace`` of a new symbolic link. Before that instant every path in ``DIR`` shows the
previous report, after it the new one; a writer killed at any point (``kill -9``) leaves the
previous report whole, and the next writer removes what it left (``staging-*``, unreferenced
``r-*``). Readers that open ``DIR/index.html`` follow the links; copying the folder with
``cp -r`` keeps them working (they are relative), archivers that follow links store plain files.

Ownership: ``DIR/.colorfid-report/`` is colorfid's. A top-level name is colorfid's when it is
the link above, or a file of a report colorfid wrote before this layout (an ``index.html`` whose
generator is colorfid, a ``results.json`` / ``gate.json`` of colorfid's schemas, a ``full/``
holding only files that such an ``index.html`` links). Anything else under a name the new report
needs is refused with :class:`~colorfid.errors.OutputError` before any work (foreign files are
never replaced or deleted); other files in ``DIR`` are left alone.

Where symbolic links cannot be made (Windows without developer mode), the top-level files are
plain copies replaced one by one (each atomically; ``index.html`` last): a reader may then see
one file of the new report beside one of the old for the moments of the copy.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from .._atomic import atomic_write_bytes, fsync_dir
from .._files import os_reason, output_problem
from .._lock import file_lock
from ..errors import OutputError

__all__ = ["STATE_DIR", "TOP_NAMES", "check_report_dir", "staged_report", "needed_names"]

#: colorfid's own folder inside a report folder.
STATE_DIR = ".colorfid-report"
#: The top-level names a report may use.
TOP_NAMES = ("index.html", "results.json", "gate.json", "full")

_LEGACY_SCHEMA = {"results.json": "colorfid.results", "gate.json": "colorfid.gate"}
_GENERATOR = re.compile(rb'<meta name="generator" content="colorfid[ "]')


def needed_names(*, gate: bool, full_size: bool) -> list[str]:
    """The top-level names a report with (or without) a verdict and full-size files uses."""
    return ["index.html", "results.json"] + (["gate.json"] if gate else []) + (["full"] if full_size else [])


def _link_target(name: str) -> str:
    return f"{STATE_DIR}/current/{name}"


def _is_our_link(p: Path) -> bool:
    return p.is_symlink() and os.readlink(p) == _link_target(p.name)


def _legacy_index(out: Path) -> bytes | None:
    """The bytes of ``out/index.html`` when it is a plain report file colorfid wrote, else None."""
    p = out / "index.html"
    if p.is_symlink() or not p.is_file():
        return None
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
        if not _GENERATOR.search(head):
            return None
        return p.read_bytes()
    except OSError:
        return None


def _legacy_full_files(out: Path) -> list[Path] | None:
    """The files of a plain ``out/full/`` when colorfid's old ``index.html`` links every one of
    them (the proof that colorfid wrote them), else None."""
    index = _legacy_index(out)
    full = out / "full"
    if index is None or full.is_symlink() or not full.is_dir():
        return None
    linked = {h.decode("utf-8", "replace") for h in re.findall(rb'href="(full/[^"]+)"', index)}
    files = []
    for p in full.rglob("*"):
        if p.is_symlink() or (not p.is_dir() and not p.is_file()):
            return None
        if p.is_file():
            if p.relative_to(out).as_posix() not in linked:
                return None
            files.append(p)
    return files


def _owner(out: Path, name: str) -> str:
    """"absent", "ours" (our link), "legacy" (a file colorfid wrote before this layout) or "foreign"."""
    p = out / name
    if not os.path.lexists(p):
        return "absent"
    if _is_our_link(p):
        return "ours"
    if name == "index.html":
        return "legacy" if _legacy_index(out) is not None else "foreign"
    if name == "full":
        return "legacy" if _legacy_full_files(out) is not None else "foreign"
    if p.is_symlink() or not p.is_file():
        return "foreign"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "foreign"
    return "legacy" if isinstance(data, dict) and data.get("schema") == _LEGACY_SCHEMA[name] else "foreign"


def check_report_dir(out_dir: str | os.PathLike[str], *, gate: bool = True, full_size: bool = False) -> Path:
    """:class:`OutputError` now, before any evaluation, when a report cannot be written into
    ``out_dir``: not a folder, not writable, or holding a file colorfid did not write under a
    name the report needs (see the module docstring)."""
    out = Path(out_dir)
    why = output_problem(out, folder=True)
    if why is not None:
        raise OutputError(f"report folder {str(out)!r} cannot be written: {why}")
    state = out / STATE_DIR
    if os.path.lexists(state) and (state.is_symlink() or not state.is_dir()):
        raise OutputError(f"report folder {str(out)!r}: {str(state)!r} exists and is not colorfid's folder")
    if state.is_dir():
        why = output_problem(state, folder=True)
        if why is not None:
            raise OutputError(f"report folder {str(out)!r} cannot be written: {why}")
    foreign = [n for n in needed_names(gate=gate, full_size=full_size) if out.is_dir() and _owner(out, n) == "foreign"]
    if foreign:
        shown = ", ".join(repr(str(out / n)) for n in foreign)
        raise OutputError(
            f"report folder {str(out)!r} holds {shown}, which colorfid did not write; colorfid never deletes or "
            "overwrites files it did not write: move them away or choose another report folder"
        )
    return out


def _fsync_tree(root: Path) -> None:
    for d, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(d)


def _replace_with_link(p: Path, target: str, owner: str, out: Path) -> None:
    """Make ``p`` the link ``target`` (atomically for an absent name, our link or a legacy file;
    a legacy ``full/`` is emptied of the files its old index linked first)."""
    if owner == "ours":
        return
    if owner == "legacy" and p.is_dir():
        files = _legacy_full_files(out) or []
        for f in files:
            f.unlink()
        for d in sorted((q for q in p.rglob("*") if q.is_dir()), key=lambda q: len(q.parts), reverse=True):
            d.rmdir()
        p.rmdir()
    tmp = p.parent / f".{p.name}.{secrets.token_hex(4)}.link"
    os.symlink(target, tmp)
    os.replace(tmp, p)


def _tidy(state: Path, keep: str) -> None:
    """Remove what earlier or killed writers left in ``state``: staging folders and versions
    other than ``keep``. Called under the lock."""
    for p in state.iterdir():
        if p.name == keep or p.name in ("current", "lock"):
            continue
        if p.name.startswith(("staging-", "r-")) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".current-") and p.is_symlink():
            p.unlink(missing_ok=True)


def _publish_links(out: Path, version: Path, names: list[str]) -> None:
    """Link ``names`` (through ``current``), swap ``current`` to ``version``, drop what no longer
    applies. Falls back to plain copies where links cannot be made."""
    state = out / STATE_DIR
    owners = {name: _owner(out, name) for name in TOP_NAMES}  # before anything changes (full/ needs the old index)
    for name in ("full", "gate.json", "results.json", "index.html"):
        owner = owners[name]
        if owner == "foreign":
            continue  # never replaced (check_report_dir refused it when the report needs the name)
        if name in names or owner == "legacy":  # a legacy file is replaced by the link (then dangles if unused)
            _replace_with_link(out / name, _link_target(name), owner, out)
    tmp = state / f".current-{secrets.token_hex(4)}"
    os.symlink(version.name, tmp)
    os.replace(tmp, state / "current")  # the swap: before it the old report, after it the new one
    fsync_dir(state)
    fsync_dir(out)
    _tidy(state, version.name)
    for name in TOP_NAMES:  # links that now lead nowhere read as absent either way: drop them
        p = out / name
        if _is_our_link(p) and not p.exists():
            p.unlink(missing_ok=True)


def _publish_copies(out: Path, version: Path, names: list[str]) -> None:  # pragma: no cover - no symlinks
    for name in TOP_NAMES:
        p = out / name
        owner = _owner(out, name)
        src = version / name
        if name == "full":
            if owner in ("legacy", "ours") and p.is_dir():
                shutil.rmtree(p)
            if src.is_dir():
                shutil.copytree(src, p)
            continue
        if name == "index.html":
            continue
        if src.is_file():
            atomic_write_bytes(p, src.read_bytes())
        elif owner in ("legacy", "ours"):
            p.unlink(missing_ok=True)
    atomic_write_bytes(out / "index.html", (version / "index.html").read_bytes())
    _tidy(out / STATE_DIR, version.name)


@contextmanager
def staged_report(out_dir: str | os.PathLike[str], *, gate: bool, full_size: bool) -> Iterator[Path]:
    """Write a report into ``out_dir`` through a staging folder: yields the (empty) staging
    folder to fill with ``index.html``, ``results.json``, ``gate.json`` and ``full/``; on a clean
    exit it becomes the report, all at once (module docstring). One writer at a time per folder.

    Raises:
        OutputError: the folder cannot be written, or holds foreign files under the names the
            report needs (:func:`check_report_dir`), or the swap failed (the previous report stays).
    """
    out = check_report_dir(out_dir, gate=gate, full_size=full_size)
    state = out / STATE_DIR
    with ExitStack() as stack:
        try:
            state.mkdir(parents=True, exist_ok=True)
            stack.enter_context(file_lock(state / "lock"))
            check_report_dir(out, gate=gate, full_size=full_size)  # what a writer before us may have left
            current = os.readlink(state / "current") if (state / "current").is_symlink() else ""
            _tidy(state, current)
            stage = state / f"staging-{secrets.token_hex(6)}"
            stage.mkdir()
        except (OSError, TimeoutError) as exc:
            raise _error(out, exc) from None
        try:
            yield stage
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        try:
            _fsync_tree(stage)
            version = state / f"r-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
            os.rename(stage, version)
            names = [n for n in TOP_NAMES if os.path.lexists(version / n)]
            try:
                _publish_links(out, version, names)
            except (OSError, NotImplementedError) as exc:
                if not isinstance(exc, NotImplementedError) and getattr(exc, "errno", None) not in (1, 38, 95):
                    raise
                _publish_copies(out, version, names)  # EPERM / ENOSYS / EOPNOTSUPP: no symbolic links here
        except OSError as exc:
            raise _error(out, exc) from None


def _error(out: Path, exc: BaseException) -> OutputError:
    return OutputError(f"report folder {str(out)!r} cannot be written: {os_reason(exc) if isinstance(exc, OSError) else exc}"
                       + (f" ({exc.filename})" if getattr(exc, "filename", None) else ""))
