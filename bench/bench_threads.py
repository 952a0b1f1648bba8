"""Benchmark of a gate run on a busy machine: warm-cache ``colorfid eval`` on the bundled
``photos`` quiet and next to one competing 2-thread torch process, in one script.

1. A warm output cache: ``colorfid eval --checkpoint golden/checkpoints/demo_l1.pth --sets photos``
   once into a temporary cache (the timed runs read every output from it, as a CI re-run does).
2. Quiet: the same command ``--rounds`` times, timed from outside (the whole process: start-up,
   imports, evaluation, gate), the median kept.
3. Busy: the same while a competitor runs: a separate Python process doing torch matrix products
   on 2 threads (``torch.set_num_threads(2)``), started before and stopped after the timed runs.
4. For comparison, busy again with ``COLORFID_THREADS=<all CPUs>`` (the thread count torch picks
   by itself, what colorfid used before :mod:`colorfid._threads`).

Prints the medians and the ratio busy / quiet (the figure of issue #17: <= 2x on 2 cores).
Runs and competitor alternate round by round so slow drifts in other load affect both; on a
shared machine the "quiet" runs still see whatever else runs there (the load average is printed).

    python bench/bench_threads.py [--rounds 5] [--sets photos]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMPETITOR = r"""
import torch, time, sys
torch.set_num_threads(2)
a = torch.rand(768, 768)
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    a = (a @ a).clamp_(-1, 1)
"""


def _eval(cache: Path, sets: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "colorfid.cli", "eval", "--checkpoint", str(ROOT / "golden/checkpoints/demo_l1.pth"),
           "--sets", *sets, "--cache", str(cache), "--no-progress"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    dt = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        raise SystemExit(f"colorfid eval failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return dt


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per condition (median kept; default 5)")
    ap.add_argument("--sets", nargs="+", default=["photos"], help="stress sets (default: photos)")
    args = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COLORFID_THREADS")}
    env.setdefault("COLORFID_KERNELS", "0")  # a fresh clone has no fused kernels
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="colorfid-bench-threads-"))
    try:
        cache = tmp / "cache"
        t_fill = _eval(cache, args.sets, env)
        print(f"cache filled in {t_fill:.2f} s; {cpus} CPUs; load average before: {_loadavg()}")
        times: dict[str, list[float]] = {"quiet": [], "busy": [], "busy, torch's own thread count": []}
        old = dict(env, COLORFID_THREADS=str(cpus))
        for _ in range(args.rounds):
            times["quiet"].append(_eval(cache, args.sets, env))
            comp = subprocess.Popen([sys.executable, "-c", COMPETITOR, "600"], stdout=subprocess.PIPE, text=True)
            try:
                assert comp.stdout is not None and comp.stdout.readline().strip() == "ready"
                time.sleep(0.5)
                times["busy"].append(_eval(cache, args.sets, env))
                times["busy, torch's own thread count"].append(_eval(cache, args.sets, old))
            finally:
                comp.terminate()
                comp.wait()
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"warm-cache `colorfid eval --checkpoint demo_l1.pth --sets {' '.join(args.sets)}`, "
              f"median of {args.rounds} (whole process), load average after: {_loadavg()}")
        for k, v in med.items():
            print(f"  {k:<34} {v:7.2f} s   (runs: {', '.join(f'{x:.2f}' for x in times[k])})")
        print(f"ratio busy / quiet: {med['busy'] / med['quiet']:.2f}x  "
              f"(torch's own thread count: {med['busy, torch' + chr(39) + 's own thread count'] / med['quiet']:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
