"""The fused kernels' cache key (colorfid._aot) covers every source file their traces run through,
so an edit anywhere in those files never meets a stale kernel. Fast: nothing is compiled."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import colorfid
import colorfid._aot as A
from colorfid.metrics import fused as F

PKG = Path(colorfid.__file__).resolve().parent
KERNELS = [F.PIXEL_KERNEL, F.SSIM_KERNEL]


def _colorfid_files_run_by(fn) -> set[Path]:
    """The colorfid source files of every Python function called while ``fn()`` runs."""
    seen: set[Path] = set()

    def profile(frame, event, arg):  # noqa: ANN001
        if event == "call" and frame.f_code.co_filename.startswith(str(PKG)):
            seen.add(Path(frame.f_code.co_filename).resolve())

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(old)
    return seen


@pytest.mark.parametrize("name", KERNELS)
def test_key_covers_every_file_the_kernel_runs(name):
    spec = A.registered()[name]
    keyed = {p.resolve() for p in A.source_files(spec)}
    module, args, _ = spec.make()
    with torch.no_grad():
        ran = _colorfid_files_run_by(lambda: module(*args))  # the eager run of what is traced
    assert ran, "the profile saw no colorfid code"
    assert ran <= keyed, f"kernel {name!r} runs files its key does not cover: {sorted(map(str, ran - keyed))}"
    for must in ("color.py", "difference.py", "_select.py", "metrics/pixels.py", "metrics/structural.py"):
        assert PKG / must in keyed


@pytest.mark.parametrize("name", KERNELS)
def test_key_changes_when_any_keyed_file_changes(name, monkeypatch):
    spec = A.registered()[name]
    files = A.source_files(spec)
    base = A._compute_key(spec)
    real = Path.read_bytes
    for target in files:
        monkeypatch.setattr(Path, "read_bytes", lambda self, t=target: real(self) + (b"#" if self == t else b""))
        assert A._compute_key(spec) != base, f"an edit of {target} leaves the key of {name!r} unchanged"
    monkeypatch.setattr(Path, "read_bytes", real)
    assert A._compute_key(spec) == base
