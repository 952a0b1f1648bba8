"""How many intra-op threads torch gets for colorfid's own work (evaluation, reports, the demo,
validation during training): :func:`pick` decides, :func:`limited` applies it to a block.

torch's CPU pool spins its threads at every parallel region's barrier, so two threads on a
2-core machine that is also running another job do not share it gracefully: each region waits for
the thread that was descheduled (a warm-cache gate run went from 1.2 s to 12.9 s next to one
other torch process). The rule, first that applies:

1. ``COLORFID_THREADS=N`` (N >= 1): N threads; ``COLORFID_THREADS=0``: leave torch as it is.
2. The user chose: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is set, or ``torch.set_num_threads``
   was called with a value other than torch's default (:func:`torch_default_threads`): that
   choice is kept.
3. The budget: the CPUs this process may run on (``os.sched_getaffinity``), divided among
   pytest-xdist workers (``PYTEST_XDIST_WORKER_COUNT``), minus the CPUs other processes keep busy
   right now (:func:`busy_cpus`), at least 1.
4. Work size: at most one thread per :data:`PIXELS_PER_THREAD` pixels of the images at hand
   (torch runs an elementwise op under its grain size on one thread anyway).

The count never exceeds torch's current setting; :func:`limited` restores it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Iterator

__all__ = ["ENV", "PIXELS_PER_THREAD", "torch_default_threads", "user_threads", "busy_cpus", "pick", "limited"]

ENV = "COLORFID_THREADS"
#: Pixels of work per thread (torch's GRAIN_SIZE for elementwise ops: 32768 elements).
PIXELS_PER_THREAD = 1 << 15


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or None


def torch_default_threads() -> int:
    """The intra-op thread count torch starts with: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
    when set, else the number of physical cores (ATen's ``intraop_default_num_threads``)."""
    for name in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _env_int(name)
        if n:
            return n
    return _physical_cores() or max(1, os.cpu_count() or 1)


def user_threads() -> int | None:
    """The thread count the user asked for (rules 1 and 2 of the module docstring), or None."""
    import torch

    forced = _env_int(ENV)
    if forced is not None:
        return forced if forced > 0 else torch.get_num_threads()
    current = torch.get_num_threads()
    if _env_int("OMP_NUM_THREADS") or _env_int("MKL_NUM_THREADS") or current != torch_default_threads():
        return current
    return None


def _runnable() -> int | None:
    """Runnable tasks system-wide right now (the 4th field of /proc/loadavg), or None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def _own_running() -> int:
    """This process's threads that are running or runnable now (Linux), at least 1 (the caller)."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as fh:
                    state = fh.read().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            n += state == "R"
    except OSError:
        return 1
    return max(1, n)


def busy_cpus(samples: int = 5, interval: float = 0.002) -> float:
    """CPUs that other processes keep busy now: the median over ``samples`` reads of the runnable
    count minus this process's running threads; where that is not available (not Linux), the
    1-minute load average."""
    counts = []
    for i in range(samples):
        r = _runnable()
        if r is None:
            break
        counts.append(max(0, r - _own_running()))
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        return float(statistics.median(counts))
    try:
        return max(0.0, float(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def pick(pixels: int | None = None) -> tuple[int, str]:
    """(threads, why) for work on images of ``pixels`` pixels (None: unknown, no size cap)."""
    import torch

    current = torch.get_num_threads()
    chosen = user_threads()
    if chosen is not None:
        return chosen, f"set by the user ({ENV} / OMP_NUM_THREADS / torch.set_num_threads)"
    budget = _cpus()
    why = [f"{budget} CPUs"]
    workers = _env_int("PYTEST_XDIST_WORKER_COUNT") if os.environ.get("PYTEST_XDIST_WORKER") else None
    if workers:
        budget = max(1, budget // workers)
        why.append(f"{workers} xdist workers")
    busy = busy_cpus()
    if busy > 0:
        budget = max(1, min(budget, int(_cpus() - busy + 0.5)))
        why.append(f"{busy:g} busy")
    if pixels is not None:
        budget = max(1, min(budget, int(pixels) // PIXELS_PER_THREAD))
        why.append(f"{int(pixels)} px")
    return max(1, min(budget, current)), ", ".join(why)


@contextlib.contextmanager
def limited(pixels: int | None = None) -> Iterator[int]:
    """Run the block with :func:`pick`'s thread count; torch's setting is restored after."""
    import torch

    before = torch.get_num_threads()
    n, _ = pick(pixels)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
