"""Fault corpus, class *files*: lost or damaged files. Concurrent writers, ``kill -9`` at random
points of a write, read-only and symlinked targets, and folders that hold files colorfid did not
write: every file colorfid promises is complete (the previous version or the new one, never a
mixture), every writer's work survives, and nothing foreign is deleted or overwritten.

The races and kills are bounded: a few dozen loops each, all in forked processes."""

from __future__ import annotations

import json
import os
import random
import re
import stat
from pathlib import Path

import pytest

from faultkit import baseline_json, make_set, tree

UPDATE = ["eval", "--predictions", "sets", "--baseline", "base.json", "--update-baseline", "--no-progress"]


def _sets_of(path: Path) -> list[str]:
    return sorted(json.loads(path.read_text())["sets"])


def _results(runner, proj, env, name: str, sets: str) -> Path:
    out = proj / name
    runner.cli("eval", "--predictions", "sets", "--sets", *sets.split(","), "--json", out, "--no-progress",
               cwd=proj, env=env).no_traceback()
    assert out.is_file()
    return out


# --------------------------------------------------------------------------- concurrent baseline writers

RACE_API = r'''
import json, os, sys
from colorfid.gate.baseline import write_baseline
from colorfid.results import Results

src, target, reps, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
one = Results.load(src)
(name, sd), = one.sets.items()
sd = {**sd, "aggregate": {k: v for k, v in sd["aggregate"].items() if k in ("de00_p95", "psnr")}}  # small files
lost = []
for rep in range(reps):
    path = f"{target}.{rep}"
    pids = []
    for w in range(2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for i in range(per):
                    write_baseline(Results(one.provenance, one.protocol, {f"w{w}_s{i:02d}": sd}), path)
            except BaseException as exc:
                print(f"writer {w}: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = 3
            os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0, 0], codes
    got = set(json.load(open(path))["sets"])
    want = {f"w{w}_s{i:02d}" for w in range(2) for i in range(per)}
    lost.append(len(want - got))
print(json.dumps({"lost": lost}))
'''


@pytest.fixture()
def fast_dir(tmp_path):
    """A folder on tmpfs when there is one (the races test the lock, not the disk: fsync there costs
    nothing), else ``tmp_path``."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="colorfid-race-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.slow
def test_files_two_baseline_writers_keep_every_set(runner, proj, env, fast_dir):
    """Figure: 2 processes x 50 updates of distinct sets, 20 repetitions: all 100 sets present
    (at e8e14bc, before the lock: 29-47 of 100 lost in each repetition)."""
    src = _results(runner, proj, env, "one.json", "good")
    r = runner.python(RACE_API, src, fast_dir / "race.json", 20, 50, cwd=proj, env=env, timeout=300).passed()
    lost = json.loads(r.out.strip().splitlines()[-1])["lost"]
    print(f"\nfigure: 2 writers x 50 sets x 20 repetitions: sets lost per repetition {lost} ({r.wall:.1f} s)")
    assert lost == [0] * 20, lost
    leftovers = [p.name for p in fast_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


RACE_CLI = r'''
import os, sys, json
from colorfid.cli import main
trials = int(sys.argv[1])
for t in range(trials):
    base = f"base{t}.json"
    pids = []
    for s in ("good", "washed"):
        pid = os.fork()
        if pid == 0:
            out = os.open(f"w{t}{s}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1); os.dup2(out, 2)
            os._exit(main(["eval", "--predictions", "sets", "--sets", s, "--baseline", base,
                           "--update-baseline", "--no-progress"]))
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    print(t, codes, sorted(json.load(open(base))["sets"]))
'''


def test_files_two_concurrent_update_baseline_commands(runner, proj, env):
    r = runner.python(RACE_CLI, 6, cwd=proj, env=env, timeout=300).passed()
    lines = r.out.strip().splitlines()
    assert len(lines) == 6
    for line in lines:
        assert line.endswith("[1, 0] ['good', 'washed']") or line.endswith("[0, 1] ['good', 'washed']"), r.out
        # washed fails the gate (exit 1) and still records its baseline; good passes (exit 0)


# --------------------------------------------------------------------------- kill -9 during --update-baseline

WRITE_BASELINE = r'''
import sys
from colorfid.gate.baseline import write_baseline
from colorfid.results import Results
write_baseline(Results.load(sys.argv[1]), sys.argv[2])
'''

TRACE = ["colorfid/gate/", "colorfid/_atomic.py", "colorfid/_files.py", "colorfid/_lock.py"]


def _baseline_state(path: Path, old: dict) -> str:
    data = json.loads(path.read_text())
    data.pop("created", None)
    if data == old:
        return "old"
    assert sorted(data["sets"]) == ["good", "washed"], data["sets"].keys()
    assert data["sets"]["good"] == old["sets"]["good"]
    return "new"


def test_files_kill_during_update_baseline(runner, proj, env):
    """Figure: kill -9 at 50 random points of --update-baseline (25 at a random executed line of
    colorfid's file code, 25 at a random time of the whole command): the old baseline or the new
    one, never a mixture; the next update cleans what the killed writers left."""
    runner.cli(*UPDATE, "--sets", "good", cwd=proj, env=env).passed("baseline written")
    base = proj / "base.json"
    old_bytes = base.read_bytes()
    old = json.loads(old_bytes)
    old.pop("created")
    washed = _results(runner, proj, env, "washed.json", "washed")
    full = runner.python(WRITE_BASELINE, washed, base, cwd=proj, env=env, trace=TRACE).passed()
    assert _baseline_state(base, old) == "new" and full.lines and full.lines > 20
    timed = runner.cli(*UPDATE, "--sets", "washed", cwd=proj, env=env)
    rng = random.Random(16)
    seen = {"old": 0, "new": 0}
    for trial in range(50):
        base.write_bytes(old_bytes)
        if trial % 2 == 0:
            r = runner.python(WRITE_BASELINE, washed, base, cwd=proj, env=env, trace=TRACE,
                              kill_at_line=rng.randint(1, full.lines))
        else:
            r = runner.cli(*UPDATE, "--sets", "washed", cwd=proj, env=env, kill_after=rng.uniform(0, timed.wall))
        seen[_baseline_state(base, old)] += 1
        assert r.rc in (-9, 0, 1), r.show()
    print(f"\nfigure: kill -9 during --update-baseline, 50 trials: {seen} (never a mixture)")
    assert seen["old"] > 0 and seen["new"] > 0, seen
    runner.cli(*UPDATE, "--sets", "washed", cwd=proj, env=env).failed("baseline written")
    assert sorted(p.name for p in proj.iterdir() if p.name.startswith(".base.json")) in ([], [".base.json.lock"])


# --------------------------------------------------------------------------- read-only, modes, symlinks


def test_files_read_only_baseline_is_refused_not_replaced(runner, proj, env):
    base = proj / "base.json"
    base.write_text(baseline_json({"good": {}}).replace('"metrics": {}', '"metrics": {"psnr": {"mean": 1.0}}'))
    base.chmod(0o444)
    before = base.read_bytes()
    runner.cli(*UPDATE, "--sets", "good", cwd=proj, env=env).usage("BaselineError", "base.json", "read-only")
    assert base.read_bytes() == before and stat.S_IMODE(base.stat().st_mode) == 0o444


def test_files_baseline_mode_is_kept(runner, proj, env):
    runner.cli(*UPDATE, "--sets", "good", cwd=proj, env=env).passed()
    base = proj / "base.json"
    base.chmod(0o640)
    runner.cli(*UPDATE, "--sets", "washed", cwd=proj, env=env).failed("baseline written")
    assert stat.S_IMODE(base.stat().st_mode) == 0o640 and _sets_of(base) == ["good", "washed"]


def test_files_symlinked_baseline_updates_its_target(runner, proj, env):
    shared = proj / "shared"
    shared.mkdir()
    runner.cli(*UPDATE, "--sets", "good", cwd=proj, env=env).passed()
    (proj / "base.json").rename(shared / "base.json")
    os.symlink("shared/base.json", proj / "base.json")
    runner.cli(*UPDATE, "--sets", "washed", cwd=proj, env=env).failed("baseline written")
    assert (proj / "base.json").is_symlink()
    assert _sets_of(shared / "base.json") == ["good", "washed"]


def test_files_read_only_results_json_is_refused(runner, proj, env):
    out = proj / "r.json"
    out.write_text("{}")
    out.chmod(0o444)
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).usage(
        "OutputError", "r.json", "read-only")
    assert out.read_text() == "{}"


# --------------------------------------------------------------------------- reports: foreign files


def _report(runner, proj, env, *extra, out="rep"):
    res = proj / "r.json"
    if not res.exists():
        _results(runner, proj, env, "r.json", "good,washed")
    return runner.cli("report", "r.json", "--out", out, *extra, cwd=proj, env=env)


def test_files_report_never_deletes_a_foreign_full_folder(runner, proj, env):
    (proj / "rep" / "full").mkdir(parents=True)
    (proj / "rep" / "full" / "mine.txt").write_text("keep me")
    before = tree(proj / "rep")
    _report(runner, proj, env, "--full-size").usage("OutputError", str(Path("rep") / "full"))
    assert tree(proj / "rep") == before


def test_files_report_never_deletes_a_foreign_gate_json(runner, proj, env):
    (proj / "rep").mkdir()
    (proj / "rep" / "gate.json").write_text('{"mine": true}')
    _report(runner, proj, env, "--no-gate").passed()
    assert json.loads((proj / "rep" / "gate.json").read_text()) == {"mine": True}
    _report(runner, proj, env).usage("OutputError", "gate.json")
    assert json.loads((proj / "rep" / "gate.json").read_text()) == {"mine": True}


def test_files_report_never_overwrites_a_foreign_index(runner, proj, env):
    (proj / "rep").mkdir()
    (proj / "rep" / "index.html").write_text("<p>my page</p>")
    _report(runner, proj, env).usage("OutputError", "index.html")
    assert (proj / "rep" / "index.html").read_text() == "<p>my page</p>"


def test_files_report_keeps_foreign_neighbours_and_leaves_no_litter(runner, proj, env):
    rep = proj / "rep"
    (rep / "notes").mkdir(parents=True)
    (rep / "notes" / "a.txt").write_text("a")
    (rep / "README").write_text("mine")
    for _ in range(3):
        _report(runner, proj, env, "--full-size").passed()
    _report(runner, proj, env).passed()
    assert (rep / "notes" / "a.txt").read_text() == "a" and (rep / "README").read_text() == "mine"
    assert (rep / "index.html").is_file() and (rep / "results.json").is_file() and (rep / "gate.json").is_file()
    hidden = [p.name for p in rep.iterdir() if p.name.startswith(".")]
    assert hidden == [".colorfid-report"], hidden
    inner = sorted(p.name for p in (rep / ".colorfid-report").iterdir())
    assert len([n for n in inner if n.startswith("r-")]) == 1 and not [n for n in inner if "staging" in n], inner


def _legacy(d: Path, results: Path) -> Path:
    """A report folder as colorfid wrote it before the staged layout: plain files and full/."""
    (d / "full" / "good").mkdir(parents=True)
    (d / "full" / "good" / "im0_output.png").write_bytes(b"png")
    (d / "results.json").write_bytes(results.read_bytes())
    (d / "gate.json").write_text(json.dumps({"schema": "colorfid.gate", "passed": True, "rows": []}))
    (d / "index.html").write_text('<!doctype html><meta name="generator" content="colorfid 0.1.0">'
                                  '<a href="results.json">r</a><a href="full/good/im0_output.png">x</a>')
    return d


def test_files_report_replaces_an_old_style_colorfid_report(runner, proj, env):
    """A folder written by colorfid before the staged layout is colorfid's: replaced, its stale
    verdict removed; a foreign file in its full/ makes that folder foreign: refused, untouched."""
    res = _results(runner, proj, env, "r.json", "good,washed")
    rep = _legacy(proj / "rep", res)
    _report(runner, proj, env, "--full-size", "--no-gate").passed()
    assert "good" in (rep / "index.html").read_text() and not (rep / "gate.json").exists()
    assert not (rep / "full" / "good" / "im0_output.png").exists() or (rep / "full").is_symlink()
    other = _legacy(proj / "rep2", res)
    (other / "full" / "mine.txt").write_text("keep")
    before = tree(other)
    _report(runner, proj, env, "--full-size", out="rep2").usage("OutputError", "full")
    assert tree(other) == before


def test_files_report_checkpoints_with_one_file_name_keep_both_results(runner, proj, env):
    from faultkit import identity_checkpoint

    identity_checkpoint(proj / "a" / "net.pth")
    identity_checkpoint(proj / "b" / "net.pth", width=16)
    runner.cli("report", "--checkpoint", "a/net.pth", "b/net.pth", "--sets", "lqsets/good", "--device", "cpu",
               "--out", "rep", "--no-gate", cwd=proj, env=env).passed()
    saved = sorted((proj / "rep" / "checkpoints").glob("*.json"))
    assert len(saved) == 2, saved
    shas = {json.loads(p.read_text())["provenance"]["checkpoint_sha256"] for p in saved}
    assert len(shas) == 2


# --------------------------------------------------------------------------- kill -9 during report writing

WRITE_REPORT = r'''
import sys
from colorfid.report import write_report
write_report(sys.argv[1], sys.argv[2], full_size=True)
'''

TRACE_REPORT = ["colorfid/report/page.py", "colorfid/report/cards.py", "colorfid/report/folder.py", "colorfid/_atomic.py",
                "colorfid/_files.py", "colorfid/_lock.py"]
TRACE_PUBLISH = ["colorfid/report/folder.py", "colorfid/_atomic.py", "colorfid/_lock.py"]


def _report_state(rep: Path, *, old_gate: bool = True) -> str:
    """'old' (sets good, with gate.json when ``old_gate``) or 'new' (sets good + washed, no gate),
    each complete."""
    index = (rep / "index.html").read_text()
    res = json.loads((rep / "results.json").read_text())
    sets = sorted(res["sets"])
    state = "new" if sets == ["good", "washed"] else "old"
    assert sets == (["good", "washed"] if state == "new" else ["good"]), sets
    assert ('id="set-washed"' in index) == (state == "new"), "index.html and results.json from different runs"
    assert (rep / "gate.json").exists() == (old_gate and state == "old"), "gate.json from another run"
    for href in set(re.findall(r'href="(full/[^"]+)"', index)):
        assert (rep / href).is_file(), f"index.html links the missing {href}"
    return state


@pytest.mark.slow
def test_files_kill_during_report_writing(runner, proj, env):
    """Figure: kill -9 at 50 random points of report writing (13 at a random executed line of the
    report code, 12 at a random executed line of the staging and swap code, 25 at a random time of
    ``colorfid report``): the folder shows the old report or the new one, never a mixture, and the
    next run leaves no litter."""
    _results(runner, proj, env, "old.json", "good")
    new = _results(runner, proj, env, "new.json", "good,washed")
    rep = proj / "rep"
    runner.cli("report", "old.json", "--out", "rep", "--full-size", cwd=proj, env=env).passed()
    assert _report_state(rep) == "old"
    snapshot = proj / "snap"
    os.rename(rep, snapshot)
    full = runner.python(WRITE_REPORT, new, snapshot, cwd=proj, env=env, trace=TRACE_REPORT).passed()
    assert _report_state(snapshot) == "new" and full.lines and full.lines > 100
    publish = runner.python(WRITE_REPORT, new, snapshot, cwd=proj, env=env, trace=TRACE_PUBLISH).passed()
    assert publish.lines and publish.lines > 20
    timed = runner.cli("report", "new.json", "--out", "snap", "--full-size", "--no-gate", cwd=proj, env=env).passed()
    rng = random.Random(17)
    seen = {"old": 0, "new": 0}
    import shutil

    pristine = proj / "pristine"
    shutil.rmtree(snapshot)
    runner.cli("report", "old.json", "--out", "snap", "--full-size", cwd=proj, env=env).passed()
    shutil.copytree(snapshot, pristine, symlinks=True)
    for trial in range(50):
        shutil.rmtree(snapshot)
        shutil.copytree(pristine, snapshot, symlinks=True)  # the old report, whole
        if trial % 2 == 0:
            trace, lines = (TRACE_REPORT, full.lines) if trial % 4 == 0 else (TRACE_PUBLISH, publish.lines)
            r = runner.python(WRITE_REPORT, new, snapshot, cwd=proj, env=env, trace=trace,
                              kill_at_line=rng.randint(1, lines))
        else:
            r = runner.cli("report", "new.json", "--out", "snap", "--full-size", "--no-gate", cwd=proj, env=env,
                           kill_after=rng.uniform(0, timed.wall))
        assert r.rc in (-9, 0), r.show()
        seen[_report_state(snapshot)] += 1
    print(f"\nfigure: kill -9 during report writing, 50 trials: {seen} (never a mixture)")
    assert seen["old"] > 0 and seen["new"] > 0, seen
    runner.cli("report", "new.json", "--out", "snap", "--full-size", "--no-gate", cwd=proj, env=env).passed()
    assert _report_state(snapshot) == "new"
    inner = sorted(p.name for p in (snapshot / ".colorfid-report").iterdir())
    assert [n for n in inner if n.startswith("r-")] and not [n for n in inner if "staging" in n], inner


CONCURRENT_REPORTS = r'''
import os, sys
from colorfid.report import write_report
pids = []
for src in sys.argv[1:3]:
    pid = os.fork()
    if pid == 0:
        write_report(src, "rep", full_size=True)
        os._exit(0)
    pids.append(pid)
print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids])
'''


def test_files_two_concurrent_report_writers(runner, proj, env):
    old = _results(runner, proj, env, "old.json", "good")
    new = _results(runner, proj, env, "new.json", "good,washed")
    for _ in range(3):
        runner.python(CONCURRENT_REPORTS, old, new, cwd=proj, env=env).passed("[0, 0]")
        _report_state(proj / "rep", old_gate=False)  # write_report without a verdict: no gate.json either way
        inner = sorted(p.name for p in (proj / "rep" / ".colorfid-report").iterdir())
        assert len([n for n in inner if n.startswith("r-")]) == 1 and not [n for n in inner if "staging" in n]


# --------------------------------------------------------------------------- the history file

HISTORY_RACE = r'''
import os, sys
from colorfid.report import append_history
from colorfid.results import Results
res = Results.load(sys.argv[1])
pids = []
for w in range(2):
    pid = os.fork()
    if pid == 0:
        for i in range(30):
            append_history("hist.jsonl", res)
        os._exit(0)
    pids.append(pid)
print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids])
'''


def test_files_concurrent_history_appends_keep_every_line(runner, proj, env):
    src = _results(runner, proj, env, "r.json", "good,washed")
    assert len(json.dumps(json.loads(src.read_text())["sets"])) > 8192  # more than one buffered write
    runner.python(HISTORY_RACE, src, cwd=proj, env=env).passed("[0, 0]")
    from colorfid.report import load_history

    assert len(load_history(proj / "hist.jsonl")) == 60


APPEND = r'''
import sys
from colorfid.report import append_history
append_history("hist.jsonl", sys.argv[1])
'''


def test_files_history_survives_a_killed_append(runner, proj, env):
    src = _results(runner, proj, env, "r.json", "good,washed")
    runner.python(APPEND, src, cwd=proj, env=env).passed()
    hist = proj / "hist.jsonl"
    one = hist.read_bytes()
    hist.write_bytes(one + one[: len(one) // 2])  # what a kill in the middle of an append leaves
    runner.cli("report", "r.json", "--out", "rep", "--history", "hist.jsonl", "--append-history",
               cwd=proj, env=env).passed()
    from colorfid.report import load_history

    assert len(load_history(hist)) == 2
