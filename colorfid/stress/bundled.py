"""colorfid's bundled data (``golden/``): the stress sets and training pairs, and resolving set
names and folders into :class:`~colorfid.stress.StressSet` s."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import StressSetError, UnknownNameError, UsageError
from .sets import CheckMode, Kind, StressSet, is_set_folder, load_stress_set, set_folders

__all__ = ["BUNDLED_SETS", "OPT_IN_SETS", "golden_dir", "stress_dir", "training_dir", "bundled_training_set", "bundled_set_names",
           "bundled_set", "resolve_sets"]

#: The bundled stress sets, in the order reports list them.
BUNDLED_SETS: tuple[str, ...] = ("colorchecker", "saturated_paint", "photos", "neutral", "colorization")
#: Bundled sets that run only when named (``colorfid eval --sets colorization``), never as part of
#: "every bundled set": a colourization set's grey inputs are not a restoration model's "before".
OPT_IN_SETS: tuple[str, ...] = ("colorization",)

_GOLDEN_ENV = "COLORFID_GOLDEN"


def golden_dir() -> Path:
    """colorfid's ``golden/`` folder: ``$COLORFID_GOLDEN`` if set, else ``<repo>/golden`` next
    to the package. StressSetError when it does not exist (a wheel install ships no golden/)."""
    env = os.environ.get(_GOLDEN_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise StressSetError(f"{_GOLDEN_ENV}={env!r} is not a folder")
        return p
    p = Path(__file__).resolve().parents[2] / "golden"
    if not p.is_dir():
        raise StressSetError(
            f"colorfid's bundled data folder {p} does not exist (it ships with the source tree, not "
            f"the wheel); clone the repository or set {_GOLDEN_ENV}=/path/to/golden"
        )
    return p


def stress_dir() -> Path:
    """``golden/stress``: the bundled stress sets."""
    return golden_dir() / "stress"


def training_dir() -> Path:
    """``golden/train``: the bundled training pairs (``lq/`` + ``gt/``), never a gate image."""
    return golden_dir() / "train"


def bundled_training_set(*, check: CheckMode = "header") -> StressSet:
    """The bundled training pairs as a validated :class:`StressSet` named ``"train"``."""
    return load_stress_set(training_dir(), name="train", check=check)


def bundled_set_names() -> list[str]:
    """Names of the bundled stress sets: :data:`BUNDLED_SETS` first (those present), then any
    other folder of ``golden/stress`` holding a ``gt/``, sorted."""
    root = stress_dir()
    if not root.is_dir():
        raise StressSetError(f"bundled stress sets folder {root} does not exist")
    found = {p.name for p in root.iterdir() if p.is_dir() and (p / "gt").is_dir() and not p.name.startswith(".")}
    return [n for n in BUNDLED_SETS if n in found] + sorted(found - set(BUNDLED_SETS))


def bundled_set(name: str, *, kind: Kind | None = None, check: CheckMode = "header") -> StressSet:
    """Load the bundled set ``name``; UnknownNameError listing the bundled names otherwise."""
    known = bundled_set_names()
    if name not in known:
        raise UnknownNameError(f"unknown stress set {name!r}; bundled sets: {known}")
    return load_stress_set(stress_dir() / name, kind=kind, check=check)


def _looks_like_path(spec: str) -> bool:
    return any(c in spec for c in ("/", "\\", os.sep)) or spec.startswith(("~", ".")) or spec.endswith(os.sep)


def resolve_sets(
    specs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    kind: Kind | None = None,
    check: CheckMode = "header",
) -> list[StressSet]:
    """Stress sets from names and paths.

    Each spec is one of

    - a bundled set's name (``"saturated_paint"``);
    - a path to a set folder (``"data/kitchens"``, a :class:`~pathlib.Path`); a bare word
      that is not a bundled name is taken as a folder when one exists by that name; write
      ``./photos`` to prefer your folder over the bundled ``photos``;
    - ``NAME=PATH`` to give a folder another set name (``"kitchens=/data/val_hard"``);
    - a path to a folder of set folders: every visible sub-folder must be a set (one that is
      not is an error, see :func:`colorfid.stress.sets.set_folders`).

    ``None`` means every bundled set except the opt-in ones (:data:`OPT_IN_SETS`), which run
    only when named.

    Raises:
        UnknownNameError: a bare name that is neither bundled nor an existing folder (the
            message lists the bundled names).
        StressSetError: a path that does not exist or is not a stress set; a folder of sets with
            a sub-folder that is not one; two sets with one name; no set at all; any set that
            fails :func:`load_stress_set`.
        UsageError: an empty name.
    """
    if specs is None:
        names = [n for n in bundled_set_names() if n not in OPT_IN_SETS]
        if not names:
            raise StressSetError(f"no bundled stress sets found in {stress_dir()}")
        return [load_stress_set(stress_dir() / n, kind=kind, check=check) for n in names]
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if len(specs) == 0:
        raise StressSetError("no stress sets given (an empty list); pass None for all bundled sets")

    out: list[StressSet] = []
    bundled: list[str] | None = None
    for spec in specs:
        set_name: str | None = None
        if isinstance(spec, os.PathLike):
            target = Path(spec)
        else:
            s = str(spec)
            if not s.strip():
                raise UsageError(f"a stress set name or folder is empty ({spec!r}); name the sets to run")
            if "=" in s and not _looks_like_path(s.split("=", 1)[0]) and s.split("=", 1)[0]:
                set_name, s = s.split("=", 1)
            if set_name is None and not _looks_like_path(s):
                if bundled is None:
                    try:
                        bundled = bundled_set_names()
                    except StressSetError:
                        bundled = []
                if s in bundled:
                    out.append(load_stress_set(stress_dir() / s, kind=kind, check=check))
                    continue
                if not Path(s).is_dir():
                    raise UnknownNameError(
                        f"unknown stress set {s!r}: not a bundled set and no folder by that name; "
                        f"bundled sets: {bundled}"
                    )
            target = Path(s)
        target = target.expanduser()
        if not target.exists():
            raise StressSetError(f"stress set folder {str(target)!r} does not exist")
        if not target.is_dir():
            raise StressSetError(f"stress set path {str(target)!r} is not a folder")
        if is_set_folder(target):
            out.append(load_stress_set(target, kind=kind, name=set_name, check=check))
            continue
        subs = set_folders(target)
        if not subs:
            raise StressSetError(
                f"{str(target)!r} is not a stress set: it has no gt/ + lq/ (or pred/) folders, "
                "and no sub-folders that have them"
            )
        if set_name is not None:
            raise StressSetError(f"{spec!r}: NAME=PATH needs PATH to be one set, but {target} holds {len(subs)} sets")
        out.extend(load_stress_set(p, kind=kind, check=check) for p in subs)

    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        where = {n: [str(s.root) for s in out if s.name == n] for n in dup}
        raise StressSetError(f"two stress sets share a name: {where}; rename a folder or use NAME=PATH")
    return out
