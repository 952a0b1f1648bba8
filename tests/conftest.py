"""Suite-wide settings. Under pytest-xdist (`pytest -n 2`, the README's test command) each worker
uses one torch thread: two workers with two threads each oversubscribe a 2-core machine, which
made small-tensor tests up to 20x slower."""

from __future__ import annotations


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(1)
