"""A fork server for the fault corpus: imports colorfid, torch and pytest once, then runs each
case in a forked child, exactly as a fresh ``colorfid ...`` or ``pytest ...`` process would run it
(its own cwd, environment, stdout/stderr, exit status; an uncaught exception prints a traceback
and exits 1, as Python does), in a fraction of a second instead of the seconds a new interpreter
spends importing torch.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
Request: ``{"mode": "cli" | "pytest" | "python", "argv": [...], "cwd": str, "env": {k: v|None},
"timeout": s, "out": path, "err": path, "kill_after": s|None, "kill_at_line": n|None,
"trace": [path fragments]}``; ``mode == "python"`` runs ``argv[0]`` as source code.
Reply: ``{"rc": int, "signal": int|None, "wall": s, "maxrss_mb": float, "base_rss_mb": float,
"timed_out": bool, "lines": int}``. ``kill_after`` SIGKILLs the child after that many seconds;
``kill_at_line`` makes the child SIGKILL itself at its n-th executed line of a file whose path
contains one of ``trace`` (random points of a write, line by line); ``lines`` counts those lines
when the child was not killed (to draw n).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback


def _preload() -> None:
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import pytest  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import colorfid.cli  # noqa: F401
    import colorfid.evaluation  # noqa: F401
    import colorfid.gate  # noqa: F401
    import colorfid.io  # noqa: F401
    import colorfid.models  # noqa: F401
    import colorfid.pytest_plugin  # noqa: F401
    import colorfid.report  # noqa: F401
    import colorfid.stress  # noqa: F401
    import colorfid.train.trainer  # noqa: F401
    import jinja2  # noqa: F401
    import tqdm.auto  # noqa: F401
    import yaml  # noqa: F401


def _tracer(fragments: list[str], kill_at: int | None, counter: list[int]):
    def local(frame, event, arg):
        if event == "line":
            counter[0] += 1
            if kill_at is not None and counter[0] >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return local

    def glob(frame, event, arg):
        fn = frame.f_code.co_filename
        if any(f in fn for f in fragments):
            return local
        return None

    return glob


def _child(req: dict) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    os.chdir(req["cwd"])
    for k, v in (req.get("env") or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    counter = [0]
    if req.get("trace"):
        sys.settrace(_tracer(req["trace"], req.get("kill_at_line"), counter))
    rc = 0
    try:
        mode, argv = req["mode"], list(req["argv"])
        if mode == "cli":
            from colorfid.cli import main

            sys.argv = ["colorfid", *argv]
            rc = main(argv)
        elif mode == "pytest":
            import pytest

            sys.argv = ["pytest", *argv]
            rc = int(pytest.main(argv))
        else:
            sys.argv = ["-c", *argv[1:]]
            exec(compile(argv[0], "<case>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        code = exc.code
        rc = code if isinstance(code, int) else (0 if code is None else 1)
        if not isinstance(code, int) and code is not None:
            print(code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what the interpreter would do
        traceback.print_exc()
        rc = 1
    sys.settrace(None)
    if req.get("trace"):
        print(f"__lines__={counter[0]}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc) & 0xFF)


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # already gone
        pass


def _serve() -> None:
    _preload()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"ready": True, "base_rss_mb": base_rss}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                _child(req)
            finally:
                os._exit(70)
        timeout = float(req.get("timeout") or 120)
        kill_after = req.get("kill_after")
        timed_out = False
        killed = False
        status, usage = 0, None
        while True:
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                break
            now = time.monotonic() - t0
            if kill_after is not None and not killed and now >= kill_after:
                _kill(pid)
                killed = True
            if now > timeout and not timed_out:
                timed_out = True
                _kill(pid)
            time.sleep(0.002)
        _kill(pid)  # anything the case left running in its process group
        wall = time.monotonic() - t0
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -(sig or 0)
        reply = {
            "rc": rc, "signal": sig, "wall": wall, "timed_out": timed_out,
            "maxrss_mb": (usage.ru_maxrss / 1024) if usage is not None else 0.0, "base_rss_mb": base_rss,
        }
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    _serve()
