"""Fixtures of the fault corpus (``tests/faults``; run alone with ``python -m pytest tests/faults -q``).

Every case runs the real command (``colorfid ...``, ``pytest ...``) or an API call in a fresh
process forked from one warm server per test worker (see ``forkserver.py``), and asserts its exact
outcome. The case ids carry their class: ``vacuous``, ``neighbour``, ``files``, ``runaway``,
``exitcode``, ``wrong`` (README, Reliability)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from faultkit import Runner, project


@pytest.fixture(scope="session")
def runner():
    r = Runner()
    yield r
    r.close()


@pytest.fixture()
def proj(tmp_path):
    """A tiny project (see ``faultkit.project``); its output cache is ``proj/cache``."""
    return project(tmp_path / "proj")


@pytest.fixture()
def env(proj):
    return {"COLORFID_CACHE": str(proj / "cache")}


def _chattr(flag: str, path: Path) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture()
def unwritable():
    """``unwritable(path)`` makes a file or folder impossible to change: mode 0555/0444 for a
    normal user, the immutable attribute (``chattr +i``) for root, whom modes do not stop.
    Undone at teardown."""
    done: list[tuple[Path, str, int]] = []

    def make(path: Path) -> Path:
        path = Path(path)
        mode = path.stat().st_mode
        if os.geteuid() == 0:
            if not _chattr("+i", path):
                pytest.skip("running as root without chattr +i: cannot make a path unwritable")
            done.append((path, "chattr", mode))
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
            done.append((path, "chmod", mode))
        return path

    yield make
    for path, how, mode in reversed(done):
        if how == "chattr":
            _chattr("-i", path)
        else:
            path.chmod(mode & 0o7777)
