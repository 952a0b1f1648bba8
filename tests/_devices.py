"""Which devices the device-generic tests run on: always the CPU, and CUDA where a real device
is there (under ``COLORFID_TEST_FAKE_CUDA=1`` torch only *claims* one, so CUDA tests skip)."""

from __future__ import annotations

import pytest
import torch


def real_cuda() -> bool:
    """A usable CUDA device (the fake of tests/fake_cuda does not count)."""
    return bool(getattr(torch.cuda, "_colorfid_real_is_available", torch.cuda.is_available)())


def fake_cuda() -> bool:
    return bool(getattr(torch.cuda, "_colorfid_fake", False))


NO_CUDA = ("no CUDA device (torch.cuda.is_available() is False)" if not fake_cuda()
           else "no real CUDA device (COLORFID_TEST_FAKE_CUDA=1 only fakes one)")

#: Skip marker for tests that need a real CUDA device.
needs_cuda = pytest.mark.skipif(not real_cuda(), reason=NO_CUDA)

#: ``@pytest.mark.parametrize("device", DEVICES)``: "cpu", and "cuda" (skipped without one).
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
