"""The stress sets of an evaluation: named or given sets, and folders of saved predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import StressSetError, UnknownNameError, UsageError

__all__ = ["prediction_sets", "collect_sets"]


def prediction_sets(root: str | os.PathLike, names: Sequence[str] | None = None) -> list[Any]:
    """Stress sets to gate saved predictions with no model.

    ``root`` is either one set folder (``pred/`` + ``gt/``), or a folder of them, or a folder
    whose sub-folders are named after bundled sets and hold the predictions for those sets'
    images (``<root>/<set>/<stem>.png`` or ``<root>/<set>/pred/<stem>.png``, matched to the
    bundled GT by file stem). Every visible sub-folder must be one of these: any other is an
    error, never skipped. ``names`` keeps only those sets.

    Raises:
        StressSetError: the folder is missing or holds no usable set; predictions do not match
            the bundled GT (the missing and extra names are listed).
        UnknownNameError: a name in ``names`` is not among the sets found.
    """
    from .. import stress

    from ..stress.sets import is_set_folder, set_folders

    r = Path(root).expanduser()
    if not r.is_dir():
        raise StressSetError(f"predictions folder {str(r)!r} does not exist or is not a folder")
    found: list[Any] = []
    if is_set_folder(r):
        found.append(stress.load_stress_set(r, kind="pred"))
    else:
        try:
            bundled = set(stress.bundled_set_names())
        except StressSetError:
            bundled = set()
        subs = set_folders(r, accept=lambda d: d.name in bundled)  # no silent skip of a non-set
        for d in subs:
            if is_set_folder(d):
                found.append(stress.load_stress_set(d, kind="pred"))
            else:
                found.append(_overlay_predictions(stress.bundled_set(d.name), d))
        if not found:
            raise StressSetError(
                f"predictions folder {str(r)!r} holds no stress set: expected pred/ + gt/ in it or in "
                f"its sub-folders, or sub-folders named after bundled sets {sorted(bundled)}"
            )
    for s in found:
        if s.kind != "pred":
            raise StressSetError(f"set {s.name!r} ({s.root}) has no pred/ folder: nothing to gate without a model")
    if names:
        by_name = {s.name: s for s in found}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise UnknownNameError(
                f"set(s) {unknown} not found in predictions folder {str(r)!r}; found: {sorted(by_name)}"
            )
        found = [by_name[n] for n in names]
    return found


def _overlay_predictions(bundled_set: Any, folder: Path) -> Any:
    from ..stress import attach_predictions

    pred_dir = folder / "pred" if (folder / "pred").is_dir() else folder
    return attach_predictions(bundled_set, pred_dir)


def collect_sets(sets: Any, *, kind: str | None = None) -> list[Any]:
    """Stress sets from names, folders and ``StressSet`` objects (None: every bundled set), in order;
    :class:`~colorfid.errors.UsageError` when two share a name. ``kind="lq"`` loads each folder for a
    model to run on (``lq/`` required, even where a ``pred/`` exists too)."""
    from .. import stress

    if sets is None:
        return list(stress.resolve_sets(None, kind=kind))
    if isinstance(sets, (str, os.PathLike)) or hasattr(sets, "pairs"):
        sets = [sets]
    out: list[Any] = []
    specs: list[Any] = []
    for s in sets:
        if hasattr(s, "pairs") and hasattr(s, "root"):
            if specs:
                out.extend(stress.resolve_sets(specs, kind=kind))
                specs = []
            out.append(s)
        else:
            specs.append(s)
    if specs:
        out.extend(stress.resolve_sets(specs, kind=kind))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two stress sets share the name(s) {dup}; rename one folder")
    return out
