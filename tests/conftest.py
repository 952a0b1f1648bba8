"""Suite-wide settings. Under pytest-xdist (`pytest -n 2`, the README's test command) each worker
uses one torch thread: two workers with two threads each oversubscribe a 2-core machine, which
made small-tensor tests up to 20x slower.

The fused metric kernels a developer built (`colorfid kernels build`, ~/.cache/colorfid/kernels)
must not change what the suite tests: every test sees an empty kernel folder (the eager path)
unless it builds its own (tests/test_kernels.py)."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config):
    os.environ["COLORFID_KERNEL_DIR"] = os.path.join(tempfile.gettempdir(), f"colorfid-test-no-kernels-{os.getpid()}")
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of small-tensor tests: faster and deterministic on a
    shared 2-core runner (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
