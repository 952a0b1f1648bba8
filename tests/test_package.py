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


# Lower rooms never import higher ones (DESIGN.md). Rank of each module.
ORDER = [
    "errors", "_version", "_aot", "color", "difference", "metrics", "losses", "testing", "io", "models",
    "stress", "evaluate", "gate", "report", "pytest_plugin", "train", "basicsr", "cli",
]


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _rank(room: str) -> int:
    return ORDER.index(room) if room in ORDER else -1


def test_lower_rooms_never_import_higher_ones():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts)
        room = _room(module)
        if room in ("__init__", "__main__") or _rank(room) < 0:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")[: -node.level + 1 or None]
                    full = ".".join(base + ([node.module] if node.module else []))
                    targets = [full] + ([f"{full}.{a.name}" for a in node.names] if not node.module else [])
                elif node.module and node.module.startswith("colorfid"):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("colorfid")]
            for t in targets:
                other = _room(t)
                if _rank(other) > _rank(room) and other not in ("errors", "_version"):
                    offenders.append(f"{module} imports {t}")
    # losses and testing share a level; models and io are peers under stress.
    allowed = {("testing", "losses"), ("models", "io")}
    offenders = [o for o in offenders if (_room(o.split()[0]), _room(o.split()[-1])) not in allowed]
    assert offenders == []
