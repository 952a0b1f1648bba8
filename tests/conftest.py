"""Suite-wide settings. Under pytest-xdist (`pytest -n 2`, the README's test command) each worker
uses one torch thread: two workers with two threads each oversubscribe a 2-core machine, which
made small-tensor tests up to 20x slower.

The fused metric kernels a developer built (`colorfid kernels build`, ~/.cache/colorfid/kernels)
must not change what the suite tests: every test sees an empty kernel folder (the eager path)
unless it builds its own (tests/test_kernels.py).

``COLORFID_TEST_FAKE_CUDA=1 python -m pytest ...`` runs the suite as on a GPU box with a CPU-only
torch (tests/fake_cuda/sitecustomize.py): code that silently picks CUDA fails there, so tests that
mean the CPU must say ``device="cpu"``. tests/_devices.py says which devices the device-generic
tests run on."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

_FAKE_CUDA_DIR = Path(__file__).resolve().parent / "fake_cuda"


def _fake_cuda() -> bool:
    """Apply tests/fake_cuda in this process and hand it to Python subprocesses (PYTHONPATH)."""
    if os.environ.get("COLORFID_TEST_FAKE_CUDA") != "1":
        return False
    spec = importlib.util.spec_from_file_location("_colorfid_fake_cuda", _FAKE_CUDA_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_FAKE_CUDA_DIR) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(_FAKE_CUDA_DIR), *paths])
    return module.install()


def pytest_configure(config):
    os.environ["COLORFID_KERNEL_DIR"] = os.path.join(tempfile.gettempdir(), f"colorfid-test-no-kernels-{os.getpid()}")
    config._colorfid_fake_cuda = _fake_cuda()
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(1)


def pytest_report_header(config):
    import torch

    if getattr(config, "_colorfid_fake_cuda", False):
        return "colorfid: FAKE CUDA (COLORFID_TEST_FAKE_CUDA=1): torch claims one CUDA device, none is usable"
    if torch.cuda.is_available():
        return (f"colorfid: CUDA device {torch.cuda.get_device_name(0)} (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda})")
    return f"colorfid: no CUDA device (torch {torch.__version__}); CUDA tests skip"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of small-tensor tests: faster and deterministic on a
    shared 2-core runner (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
