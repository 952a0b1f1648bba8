"""Stress sets: discovery, pairing and validation, and the bundled sets.

A *stress set* is a folder::

    my_set/
      gt/      target images ("after")                       required
      lq/      model inputs ("before"), same file stems       \\ at least one
      pred/    saved model outputs, same file stems           /
      set.toml optional: description, [protocol] overrides, [degradation], [provenance]

Images are matched by file stem (``gt/kitchen.png`` <-> ``lq/kitchen.jpg``); the supported
suffixes are :data:`IMAGE_SUFFIXES` (case-insensitive). Hidden files and other files are
ignored (listed in :attr:`StressSet.ignored`). Everything that would make a gate measure the
wrong thing -- a stem on one side only, two files with one stem, an image whose size differs
from its GT, an unreadable file, an empty or missing folder, an unknown ``set.toml`` key or
protocol field -- raises one :class:`~colorfid.errors.StressSetError` that lists *every*
offender, never a silent skip.

The bundled sets (``colorchecker``, ``saturated_paint``, ``photos``, ``neutral``, and the opt-in
``colorization``, run only when named) live in
``<repo>/golden/stress/<name>/`` and were made by ``scripts/make_golden_data.py`` (see
``golden/stress/README.md``). The bundled *training* pairs (``golden/train/``, same layout)
come from the same generators with other seeds and scenes and never overlap the stress sets.
``COLORFID_GOLDEN=/path/to/golden`` points colorfid at another copy of ``golden/``.

Rooms: :mod:`~colorfid.stress.sets` (folders, pairing, validation) and
:mod:`~colorfid.stress.bundled` (``golden/`` and resolving names and folders).
"""

from __future__ import annotations

from .bundled import (
    BUNDLED_SETS, OPT_IN_SETS, bundled_set, bundled_set_names, bundled_training_set, golden_dir, resolve_sets, stress_dir,
    training_dir,
)
from .sets import IMAGE_SUFFIXES, SET_TOML_KEYS, CheckMode, Kind, Pair, StressSet, attach_predictions, load_stress_set

__all__ = [
    "IMAGE_SUFFIXES",
    "BUNDLED_SETS",
    "OPT_IN_SETS",
    "SET_TOML_KEYS",
    "Pair",
    "StressSet",
    "load_stress_set",
    "attach_predictions",
    "bundled_set_names",
    "bundled_set",
    "resolve_sets",
    "golden_dir",
    "stress_dir",
    "training_dir",
    "bundled_training_set",
    "Kind",
    "CheckMode",
]
