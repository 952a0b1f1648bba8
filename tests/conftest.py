"""Suite-wide settings. Under pytest-xdist (`pytest -n 2`, the README's test command) each worker
uses one torch thread: two workers with two threads each oversubscribe a 2-core machine, which
made small-tensor tests up to 20x slower."""

from __future__ import annotations

import pytest


def pytest_configure(config):
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
