"""``COLORFID_TEST_FAKE_CUDA=1``: make a CPU-only torch claim one CUDA device, to flush out code
and tests that silently pick CUDA when it is there (``select_device`` prefers cuda > mps > cpu,
the trainer takes the GPU by default).

The fake answers the questions a program asks *before* it touches the device (is CUDA there,
how many devices, bf16 support, the name, RNG states to save), as a real one-GPU box would;
every real use of the device (a tensor on ``cuda``, ``Module.to("cuda")``, ``synchronize``)
still fails with torch's "Torch not compiled with CUDA enabled" -- which is the point: a test
that meant CPU but did not say so fails there.

``tests/conftest.py`` applies it in the pytest process and puts this folder on ``PYTHONPATH``,
so Python subprocesses of the tests (CLI runs, ``pytester`` subprocesses) import it as their
``sitecustomize`` and are faked too, when they import torch (not before: ``import colorfid``
must stay free of torch). With a real CUDA device, or without the variable, it does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

ENV = "COLORFID_TEST_FAKE_CUDA"
NAME = f"fake CUDA device ({ENV}=1; CPU-only torch)"


def install() -> bool:
    """Fake one CUDA device if ``$COLORFID_TEST_FAKE_CUDA`` is 1 and torch has none; True if faked."""
    if os.environ.get(ENV) != "1":
        return False
    import torch

    cuda = torch.cuda
    if getattr(cuda, "_colorfid_fake", False):
        return True
    if cuda.is_available():  # a real GPU: nothing to fake
        return False
    cuda._colorfid_real_is_available = cuda.is_available
    cuda.is_available = lambda: True
    cuda.device_count = lambda: 1
    cuda.is_bf16_supported = lambda *args, **kwargs: True
    cuda.get_device_name = lambda *args, **kwargs: NAME
    # What a training state saves and restores on a GPU box, also when it trains on the CPU.
    cuda.get_rng_state_all = lambda: []
    cuda.get_rng_state = lambda *args, **kwargs: torch.empty(0, dtype=torch.uint8)  # torch.compile saves it
    cuda.set_rng_state = lambda *args, **kwargs: None
    cuda._colorfid_fake = True
    return True


class _AfterTorch(importlib.abc.MetaPathFinder):
    """Runs :func:`install` right after ``import torch`` has executed torch's ``__init__``."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):  # noqa: ANN001, ANN202
                run(module)
                install()

            spec.loader.exec_module = exec_module
        return spec


if os.environ.get(ENV) == "1":
    if "torch" in sys.modules:
        install()
    elif not any(isinstance(f, _AfterTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorch())
