"""colorfid._threads: the torch thread count of colorfid's own work (evaluation, reports, the
demo, validation) -- the user's choice first, then xdist workers, the CPUs other processes keep
busy and the size of the work; restored afterwards."""

from __future__ import annotations

import pytest
import torch

from colorfid import _threads


@pytest.fixture
def default_torch(monkeypatch):
    """torch at its 'default' of 4 threads (whatever this machine has), no user settings."""
    before = torch.get_num_threads()
    for name in ("COLORFID_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTEST_XDIST_WORKER",
                 "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(4)
    monkeypatch.setattr(_threads, "torch_default_threads", lambda: 4)
    monkeypatch.setattr(_threads, "_cpus", lambda: 4)
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 0.0)
    yield
    torch.set_num_threads(before)


def test_quiet_machine_uses_every_cpu(default_torch):
    assert _threads.pick()[0] == 4


@pytest.mark.parametrize("busy,want", [(0.0, 4), (1.0, 3), (2.0, 2), (3.0, 1), (7.0, 1)])
def test_busy_cpus_are_left_to_the_others(default_torch, monkeypatch, busy, want):
    monkeypatch.setattr(_threads, "busy_cpus", lambda: busy)
    n, why = _threads.pick()
    assert n == want and (busy == 0 or f"{busy:g} busy" in why)


def test_xdist_workers_share_the_cpus(default_torch, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    assert _threads.pick()[0] == 1
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert _threads.pick()[0] == 2


def test_small_work_takes_fewer_threads(default_torch):
    assert _threads.pick(pixels=_threads.PIXELS_PER_THREAD - 1)[0] == 1
    assert _threads.pick(pixels=3 * _threads.PIXELS_PER_THREAD)[0] == 3
    assert _threads.pick(pixels=100 * _threads.PIXELS_PER_THREAD)[0] == 4


def test_the_users_choice_wins(default_torch, monkeypatch):
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 3.0)
    monkeypatch.setenv("COLORFID_THREADS", "3")
    assert _threads.pick()[0] == 3
    monkeypatch.setenv("COLORFID_THREADS", "0")  # 0: leave torch as it is
    assert _threads.pick()[0] == 4
    monkeypatch.delenv("COLORFID_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert _threads.pick()[0] == 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(2)  # an explicit torch.set_num_threads (not torch's default of 4)
    assert _threads.pick() == (2, "set by the user (COLORFID_THREADS / OMP_NUM_THREADS / torch.set_num_threads)")
    torch.set_num_threads(4)
    assert _threads.pick()[0] == 1


def test_limited_applies_and_restores(default_torch, monkeypatch):
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 2.0)
    with _threads.limited() as n:
        assert n == 2 == torch.get_num_threads()
    assert torch.get_num_threads() == 4
    with pytest.raises(RuntimeError):
        with _threads.limited():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 4


def test_torch_default_and_busy_cpus_are_sane(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert _threads.torch_default_threads() >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads.torch_default_threads() == 3
    busy = _threads.busy_cpus(samples=3, interval=0.0)
    assert busy >= 0.0


def test_evaluate_records_its_thread_count(default_torch, monkeypatch, tmp_path):
    from colorfid.evaluation import evaluate
    from colorfid.stress import load_stress_set

    import numpy as np
    from PIL import Image

    root = tmp_path / "s"
    for sub in ("gt", "lq"):
        (root / sub).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(root / sub / "a.png")
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 3.0)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x.clone()

    r = evaluate(Spy(), [load_stress_set(root)], device="cpu", cache_dir=tmp_path / "c", progress=False)
    assert seen == [1] and r.provenance["timing"]["threads"] == 1
    assert torch.get_num_threads() == 4
