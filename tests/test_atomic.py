"""colorfid._atomic: the one atomic-write mechanism (the rooms' own tests cover their use)."""

from __future__ import annotations

import os
import stat

import pytest

from colorfid._atomic import atomic_open, atomic_write_bytes


def test_written_whole_with_umask_permissions(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "b.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]


def test_mode_is_checked(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "c", "a"):
            pass
