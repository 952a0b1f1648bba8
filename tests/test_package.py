"""The package face: lazy public API, version, CLI basics, and the room order of DESIGN.md."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import colorfid
from colorfid.cli import main

PKG = Path(colorfid.__file__).resolve().parent


def test_every_public_name_resolves():
    missing = [n for n in colorfid.__all__ if not hasattr(colorfid, n)]
    assert missing == []


def test_import_is_lazy_and_cheap():
    code = "import sys, colorfid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no_such"):
        colorfid.no_such  # noqa: B018


def test_cli_version_and_info(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert colorfid.__version__ in capsys.readouterr().out
    assert main(["info"]) == 0
    assert "torch" in capsys.readouterr().out


def test_cli_without_command_is_a_usage_error(capsys):
    assert main([]) == 2


# Lower rooms never import higher ones (docs/ARCHITECTURE.md). Rank of each room, lowest first; a
# room is a top-level module or package of colorfid; entry points (cli.py, any __main__.py) rank
# with cli.
ORDER = [
    "errors", "_version", "_atomic", "_lock", "_heap", "_threads", "_select", "_tensors", "_layout", "_format", "_files", "_aot",
    "color", "difference", "metrics", "losses", "testing", "icc", "io", "models", "stress", "results", "evaluation",
    "gate", "report", "pytest_plugin", "train", "basicsr", "demo", "cli",
]


def _modules():
    """(dotted name, path, is package __init__) of every colorfid module."""
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), path, path.name == "__init__.py"


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "cli"
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(room: str) -> int:
    return ORDER.index(room) if room in ORDER else -1


def _imports(module: str, path: Path, is_pkg: bool):
    """(imported module, imported names) of every colorfid import in ``path``, resolved."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("colorfid"):
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("colorfid"):
                    yield a.name, []


def test_every_module_has_a_room():
    rooms = {_room(m) for m, _, _ in _modules()} - {"__init__"}
    assert sorted(r for r in rooms if _rank(r) < 0) == []


def test_lower_rooms_never_import_higher_ones():
    offenders = []
    for module, path, is_pkg in _modules():
        room = _room(module)
        if room == "__init__":  # colorfid/__init__.py: the lazy public face, imports nothing eagerly
            continue
        for target, names in _imports(module, path, is_pkg):
            others = [target] if names and target != "colorfid" else [target] + [f"{target}.{n}" for n in names]
            for other in others:
                if other == "colorfid":
                    continue
                if _rank(_room(other)) > _rank(room):
                    offenders.append(f"{module} imports {other}")
    assert offenders == []


def test_no_module_imports_another_modules_private_names():
    """``from .x import _name`` across modules is an internal API with no home: shared helpers
    live in the internal modules (``colorfid._select``, ``_tensors``, ``_layout``, ``_files``,
    ``_format``...), whose own names are public. Importing a private *module* is fine."""
    offenders = []
    for module, path, is_pkg in _modules():
        for target, names in _imports(module, path, is_pkg):
            for n in names:
                if not n.startswith("_") or n.startswith("__"):
                    continue
                sub = PKG.parent.joinpath(*target.split("."), n)
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    continue  # a module, not a name
                offenders.append(f"{module}: from {target} import {n}")
    assert offenders == []


_SUBPROCESS_NAMES_CHECK = r"""
import importlib, json, pkgutil, sys, types
import colorfid

# 1. import every submodule of colorfid (entry points excepted: importing them runs them)
mods = []
for info in pkgutil.walk_packages(colorfid.__path__, "colorfid."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
    mods.append(info.name)
problems = []
# 2. every public name of colorfid is still the object its home module defines, never a module
for name in colorfid.__all__:
    obj = getattr(colorfid, name)
    home = colorfid._EXPORTS.get(name)
    want = getattr(importlib.import_module(home), name) if home else obj
    if isinstance(obj, types.ModuleType) or obj is not want:
        problems.append(f"colorfid.{name} is {obj!r}, expected {want!r}")
# 3. the same for every package's own public names
for mod in mods:
    m = sys.modules[mod]
    if not hasattr(m, "__path__"):
        continue
    for name in getattr(m, "__all__", []):
        obj = getattr(m, name, None)
        if isinstance(obj, types.ModuleType):
            problems.append(f"{mod}.{name} is a module (a submodule shadows the public name)")
print(json.dumps({"modules": len(mods), "problems": problems}))
"""


def test_public_names_survive_importing_every_submodule():
    """``import colorfid.<sub>`` sets the attribute ``<sub>`` on the package: a public name spelt
    like a submodule turns into that module (``cf.evaluate`` did, once ``colorfid.evaluate`` was a
    package). A fresh process imports every submodule first, then checks every public name of
    colorfid and of each subpackage."""
    import json

    out = subprocess.run([sys.executable, "-c", _SUBPROCESS_NAMES_CHECK], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["modules"] > 50
    assert data["problems"] == []


def test_evaluate_is_callable_after_importing_the_evaluation_package(tmp_path):
    code = (
        "import colorfid.evaluation, colorfid.pytest_plugin\n"
        "import colorfid as cf\n"
        "from colorfid.evaluation import evaluate\n"
        "assert callable(cf.evaluate) and cf.evaluate is evaluate, cf.evaluate\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
