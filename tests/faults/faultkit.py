"""Helpers of the fault corpus: the fork-server client (:class:`Runner`), the outcome of a case
(:class:`Run` and its exact assertions), and tiny generated stress sets, thresholds and
checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

HERE = Path(__file__).resolve().parent

LUMA = np.array((0.299, 0.587, 0.114))

#: The bounds every tiny project gates with (loose enough that the "good" sets pass).
TINY_TOML = """\
[defaults]
de00_p95 = { max = 5.0 }
sat_ratio_hc = { target = 1.0, band = 0.1 }
"""

#: Exception types every usage error of the corpus must name (colorfid.errors).
USAGE_TYPES = ("ConfigError", "UnknownNameError", "BaselineError", "StressSetError", "OutputError", "UsageError",
               "CheckpointError", "UnsafeCheckpointError", "ImageReadError", "ImageTooLargeError")


@dataclass
class Run:
    """What one case did: exit status, output, wall time, peak memory."""

    argv: list[str]
    rc: int
    out: str
    err: str
    wall: float
    maxrss_mb: float
    base_rss_mb: float
    timed_out: bool
    signal: int | None
    lines: int | None = None

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    @property
    def extra_rss_mb(self) -> float:
        """Peak RSS above the fork server's (what the case itself added)."""
        return max(0.0, self.maxrss_mb - self.base_rss_mb)

    def show(self) -> str:
        return f"argv={self.argv} rc={self.rc} wall={self.wall:.2f}s\n--- stdout\n{self.out}\n--- stderr\n{self.err}"

    def no_traceback(self) -> "Run":
        assert "Traceback (most recent call last)" not in self.text, self.show()
        assert "INTERNALERROR" not in self.text, self.show()
        assert not self.timed_out, self.show()
        return self

    def usage(self, etype: str, *fragments: str, code: int = 2) -> "Run":
        """Exactly a usage error: exit ``code`` (2 CLI, 4 pytest), no traceback, the exception
        type named, every fragment (file, key) in the message."""
        self.no_traceback()
        assert self.rc == code, self.show()
        assert etype in self.text, (etype, self.show())
        for f in fragments:
            assert str(f) in self.text, (f, self.show())
        return self

    def passed(self, *fragments: str) -> "Run":
        self.no_traceback()
        assert self.rc == 0, self.show()
        for f in fragments:
            assert str(f) in self.text, (f, self.show())
        return self

    def failed(self, *fragments: str) -> "Run":
        """Exactly a failed gate: exit 1."""
        self.no_traceback()
        assert self.rc == 1, self.show()
        for f in fragments:
            assert str(f) in self.text, (f, self.show())
        return self


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COLORFID_CACHE", "COLORFID_MAX"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("COV_CORE_SOURCE", None)
    return env


class Runner:
    """Client of ``forkserver.py``: each :meth:`cli` / :meth:`pytest` / :meth:`python` call is one
    case in a fresh forked process."""

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="colorfid-faults-"))
        self._lock = threading.Lock()
        self._n = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "forkserver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=_clean_env(), text=True, bufsize=1,
        )
        hello = json.loads(self.proc.stdout.readline())
        assert hello.get("ready"), hello
        self.base_rss_mb = float(hello["base_rss_mb"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _run(self, mode: str, argv: list[str], cwd: str | os.PathLike, env: dict[str, Any] | None = None,
             timeout: float = 120, **extra: Any) -> Run:
        with self._lock:
            self._n += 1
            out, err = self._tmp / f"{self._n}.out", self._tmp / f"{self._n}.err"
            req = {"mode": mode, "argv": [str(a) for a in argv], "cwd": str(cwd), "env": env or {},
                   "timeout": timeout, "out": str(out), "err": str(err), **extra}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            reply = json.loads(self.proc.stdout.readline())
        o = out.read_text(errors="replace") if out.exists() else ""
        e = err.read_text(errors="replace") if err.exists() else ""
        lines = None
        if "__lines__=" in e:
            e, _, tail = e.rpartition("__lines__=")
            lines = int(tail.strip())
        return Run(argv=[str(a) for a in argv], rc=reply["rc"], out=o, err=e, wall=reply["wall"],
                   maxrss_mb=reply["maxrss_mb"], base_rss_mb=reply["base_rss_mb"], timed_out=reply["timed_out"],
                   signal=reply["signal"], lines=lines)

    def cli(self, *argv: Any, cwd: str | os.PathLike, env: dict[str, Any] | None = None, timeout: float = 120,
            **extra: Any) -> Run:
        """``colorfid <argv>`` as a fresh process would run it."""
        return self._run("cli", list(argv), cwd, env, timeout, **extra)

    def pytest(self, *argv: Any, cwd: str | os.PathLike, env: dict[str, Any] | None = None, timeout: float = 120,
               **extra: Any) -> Run:
        """``pytest <argv>`` (cache provider off) as a fresh process would run it."""
        return self._run("pytest", ["-p", "no:cacheprovider", *argv], cwd, env, timeout, **extra)

    def python(self, code: str, *argv: Any, cwd: str | os.PathLike, env: dict[str, Any] | None = None,
               timeout: float = 120, **extra: Any) -> Run:
        """Python source run as ``__main__`` in a fresh process (for API-level races and kills)."""
        return self._run("python", [code, *argv], cwd, env, timeout, **extra)


# --------------------------------------------------------------------------- data


from _images import gt_array, png  # noqa: E402 - tests/_images.py, shared with the plugin tests


def make_set(root: Path, name: str, *, factor: float = 1.0, n: int = 2, sides: Iterable[str] = ("pred",),
             names: Iterable[str] | None = None, h: int = 24, w: int = 24) -> Path:
    """A tiny stress set ``root/name`` with ``gt/`` and the given sides; the predictions (or
    inputs) keep ``factor`` of the GT's chroma about BT.601 luma (1.0 = identical)."""
    d = root / name
    stems = list(names) if names is not None else [f"im{i}" for i in range(n)]
    for i, stem in enumerate(stems):
        g = gt_array(i, h, w)
        y = (g @ LUMA)[..., None]
        png(d / "gt" / f"{stem}.png", g)
        for side in sides:
            png(d / side / f"{stem}.png", y + factor * (g - y))
    return d


def project(root: Path, *, toml: str | None = TINY_TOML) -> Path:
    """A project folder: ``colorfid.toml`` (tiny bounds), ``sets/good`` and ``sets/washed`` (saved
    predictions), ``lqsets/good`` (model inputs), ``pytest.ini`` anchoring pytest's rootdir."""
    root.mkdir(parents=True, exist_ok=True)
    make_set(root / "sets", "good")
    make_set(root / "sets", "washed", factor=0.6)
    make_set(root / "lqsets", "good", sides=("lq",))
    if toml is not None:
        (root / "colorfid.toml").write_text(toml)
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def identity_checkpoint(path: Path, width: int = 8) -> Path:
    """A NAFNet whose output equals its input (zero ending conv: the global residual passes)."""
    import torch

    from colorfid.models.checkpoint import save_model
    from colorfid.models.nafnet import NAFNet

    torch.manual_seed(0)
    net = NAFNet(img_channel=3, width=width, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    with torch.no_grad():
        net.ending.weight.zero_()
        net.ending.bias.zero_()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model(net, path)


def baseline_json(sets: dict[str, dict[str, Any]]) -> str:
    """A baseline file's text for ``{set: metrics}`` measured under the default protocol."""
    from colorfid.metrics import MetricProtocol
    from colorfid.results import protocol_dict

    proto = protocol_dict(MetricProtocol())
    return json.dumps({"schema": "colorfid.baseline", "schema_version": 1, "created": "2026-01-01T00:00:00Z",
                       "sets": {k: {"protocol": proto, "images": 2, "metrics": m} for k, m in sets.items()}})


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative) -> bytes (files), None (folders), 'link:<target>'."""
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = None
        else:
            out[rel] = p.read_bytes()
    return out
