"""The pytest face of colorfid: ``pytest --checkpoint net_g_20000.pth`` gates a checkpoint.

Registered through the ``pytest11`` entry point (switch it off with ``-p no:colorfid``). It is
inert — no torch import, no item, no file written — unless ``--checkpoint`` /
``--colorfid-checkpoint`` or ``--colorfid-predictions`` (or their ini keys) is given.

When active it adds one test item per stress set (node id ``colorfid::<set>``, marker
``colorfid``), so ``-k``, ``-m colorfid`` / ``-m "not colorfid"``, ``-x`` and pytest-xdist
work as for any test. An item evaluates its set (``colorfid.evaluation``), judges it
(``colorfid.gate``) and, when it fails, shows the metric table (value, bound, baseline, Δ,
verdict) and the worst images instead of a traceback.

Options (each also an ini key in ``[tool.pytest.ini_options]``, e.g. ``colorfid_config``):

``--colorfid-checkpoint PATH`` (alias ``--checkpoint`` unless a plugin or conftest defines
``--checkpoint`` itself: then that option is theirs, and the header and the summary say that the
colorfid gate did not run),
``--colorfid-predictions DIR``, ``--colorfid-config FILE`` (default: ``colorfid.toml`` in the
rootdir, then ``[tool.colorfid]`` in ``pyproject.toml``, then the bundled
``golden/colorfid.toml``), ``--colorfid-baseline FILE``, ``--colorfid-update-baseline``,
``--colorfid-allow-missing-baseline``, ``--colorfid-sets a,b``, ``--colorfid-report DIR``,
``--colorfid-device``, ``--colorfid-cache DIR``, ``--colorfid-weights params_ema|params`` (which
entry of the checkpoint: the EMA weights by default, as the trainer validates).

Exit codes are pytest's: 1 when a gate item fails, 4 for a usage error (bad thresholds file,
unknown metric or set, missing/corrupt baseline, malformed stress set, empty mask, an output
that cannot be written, an option given an empty value...), also when it surfaces while an item
runs (:func:`colorfid.errors.pytest_exit_code`, the mapping every colorfid command shares).

The plugin never breaks a suite that does not use it: it registers only ``--colorfid-*``
options, and takes ``--checkpoint`` by rewriting it to ``--colorfid-checkpoint`` on the command
line only when, after the plugins and the initial conftests have declared their options, nobody
else has declared ``--checkpoint`` (a conftest loaded later may then declare it without a
conflict). Under pytest-xdist each worker evaluates its own sets;
only plain Python types travel back on the test reports, and only the controller writes the
baseline and the report.

Fixtures for your own tests: ``colorfid_model`` (the loaded checkpoint; skips without one),
``colorfid_evaluate`` (``evaluate(sets=None, model=None, **kw) -> Results``) and
``colorfid_gate`` (``gate(results, config=None, baseline=None, check=True) -> GateReport``,
failing the test with the table when ``check`` and the gate fails).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

__all__ = ["ColorfidItem", "ColorfidCollector", "GateFailure"]

_INI = {
    "checkpoint": "checkpoint file to gate (same as --colorfid-checkpoint)",
    "predictions": "folder of saved predictions to gate (same as --colorfid-predictions)",
    "config": "thresholds file (same as --colorfid-config)",
    "baseline": "baseline JSON file (same as --colorfid-baseline)",
    "report": "folder for the HTML report (same as --colorfid-report)",
    "device": "inference device (same as --colorfid-device)",
    "sets": "stress sets to run, comma separated (same as --colorfid-sets)",
    "cache": "output cache folder (same as --colorfid-cache)",
    "weights": "checkpoint entry to score: params_ema (default) or params (same as --colorfid-weights)",
}
_PATH_KEYS = ("checkpoint", "predictions", "config", "baseline", "report", "cache")


class GateFailure(Exception):
    """A gate item failed: carries the text table shown instead of a traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _State:
    """Per-config state of the plugin (lives in ``config.stash``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.plan: Any = None
        self.error: str | None = None
        self.payloads: dict[str, dict[str, Any]] = {}
        self.usage_errors: list[str] = []
        self.messages: list[str] = []
        self.checkpoint = _get(config, "checkpoint")
        self.predictions = _get(config, "predictions")
        self.active = bool(self.checkpoint or self.predictions)
        #: "--checkpoint" was given but another plugin or conftest owns it: the gate did not run.
        self.shadowed = config.stash.get(_SHADOW_KEY, False) and not self.active

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # Hooks: this object is registered as a plugin while the gate is active.

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, "colorfid", None)
        usage = getattr(report, "colorfid_usage_error", None)
        if payload is not None:
            self.payloads[payload["set"]] = payload
        if usage:
            self.usage_errors.append(f"{report.nodeid}: {usage}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        if self.usage_errors:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if not self.payloads:
            return
        from .errors import ColorfidError, describe, pytest_exit_code
        from .results import Results
        from .gate import GateReport

        order = [n for n in self.plan.set_names if n in self.payloads]
        results = Results.merge([Results.from_dict(self.payloads[n]["results"]) for n in order])
        gate = GateReport.merge([GateReport.from_dict(self.payloads[n]["gate"]) for n in order])
        try:
            path = self.plan.write_baseline(results)
            if path is not None:
                self.messages.append(f"baseline written: {path} (sets {', '.join(order)})")
            report_dir = _get(self.config, "report")
            if report_dir:
                index = _write_report(results, report_dir, gate, self.plan.baseline)
                self.messages.append(f"report: {index}")
        except (ColorfidError, OSError) as exc:
            self.usage_errors.append(describe(exc))
            session.exitstatus = pytest_exit_code(exc)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.is_worker:
            return
        tr = terminalreporter
        tr.section("colorfid")
        for name in self.plan.set_names:
            p = self.payloads.get(name)
            if p is None:
                tr.write_line(f"{name:<24} not run")
                continue
            g = p["gate"]
            fails = [f"{r['metric']} {r['verdict']}" for r in g["rows"] if r["verdict"] not in ("pass", "improved", "new")]
            tr.write_line(f"{name:<24} {'PASS' if g['passed'] else 'FAIL'}" + (f"  ({'; '.join(fails)})" if fails else ""))
        for m in self.messages:
            tr.write_line(m)
        for e in self.usage_errors:
            tr.write_line(f"usage error: {e}", red=True)


_KEY = pytest.StashKey[_State]()
#: Set when ``--checkpoint`` was given on a command line where another plugin or conftest owns it.
_SHADOW_KEY = pytest.StashKey[bool]()


def _get(config: pytest.Config, name: str) -> str | None:
    """Option value, else ini value (paths: relative to the cwd / to the ini file). An option
    given with an empty value (``--colorfid-baseline=``, an unset variable in CI) is a usage
    error: silently dropping it would run the gate without what was asked for."""
    v = config.getoption(f"colorfid_{name}", default=None)
    if v is not None and str(v).strip() == "":
        raise pytest.UsageError(
            f"colorfid: UsageError: --colorfid-{name} was given an empty value; give a "
            f"{'path' if name in _PATH_KEYS else 'value'}, or leave the option out"
        )
    if v not in (None, ""):
        if name in _PATH_KEYS:
            return str(Path(config.invocation_params.dir, os.path.expanduser(str(v))))
        return str(v)
    try:
        iv = config.getini(f"colorfid_{name}")
    except ValueError:
        return None
    if iv in (None, "", []):
        return None
    iv = str(iv).strip()
    if name in _PATH_KEYS:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return str(Path(base, os.path.expanduser(iv)))
    return iv


# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("colorfid", "colorfid colour-fidelity gate")
    group.addoption("--colorfid-checkpoint", dest="colorfid_checkpoint", metavar="PATH", default=None,
                    help="gate this checkpoint on the stress sets (also --checkpoint PATH, unless a plugin "
                    "or conftest.py defines --checkpoint itself)")
    group.addoption("--colorfid-predictions", dest="colorfid_predictions", metavar="DIR", default=None,
                    help="gate saved predictions (pred/ + gt/ set folders, or <set>/ folders of bundled sets)")
    group.addoption("--colorfid-config", dest="colorfid_config", metavar="FILE", default=None,
                    help="thresholds file (default: colorfid.toml, then [tool.colorfid], then the bundled one)")
    group.addoption("--colorfid-baseline", dest="colorfid_baseline", metavar="FILE", default=None,
                    help="baseline JSON to check regressions against")
    group.addoption("--colorfid-update-baseline", dest="colorfid_update_baseline", action="store_true",
                    help="write the baseline from this run (only the sets that ran; others are kept)")
    group.addoption("--colorfid-allow-missing-baseline", dest="colorfid_allow_missing_baseline",
                    action="store_true", help="a missing baseline file is not an error")
    group.addoption("--colorfid-sets", dest="colorfid_sets", metavar="A,B", default=None,
                    help="stress sets to run (names or folders, comma separated)")
    group.addoption("--colorfid-report", dest="colorfid_report", metavar="DIR", default=None,
                    help="write the HTML report into DIR")
    group.addoption("--colorfid-device", dest="colorfid_device", metavar="DEVICE", default=None,
                    help="inference device (cpu, cuda, cuda:1, mps; default: best available)")
    group.addoption("--colorfid-cache", dest="colorfid_cache", metavar="DIR", default=None,
                    help="model output cache (default $COLORFID_CACHE or ./.colorfid_cache)")
    group.addoption("--colorfid-weights", dest="colorfid_weights", metavar="KEY", default=None,
                    choices=("params_ema", "params"),
                    help="checkpoint entry to score: params_ema (default: the EMA weights a training validated; "
                    "params where the file has none) or params")
    for name, help_ in _INI.items():
        parser.addini(f"colorfid_{name}", help_, default=None)


def _option_names(parser: pytest.Parser) -> set[str]:
    names: set[str] = set()
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    for g in groups:
        for opt in getattr(g, "options", []) if g is not None else []:
            names.update(opt.names())
    return names


def _alias_positions(args: list[str]) -> list[int]:
    """Indices of ``--checkpoint`` / ``--checkpoint=PATH`` in ``args`` (up to a ``--``)."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == "--checkpoint" or a.startswith("--checkpoint="):
            out.append(i)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    # Decided after every plugin and the initial conftests have declared their options. colorfid
    # never registers --checkpoint (a conftest loaded later may declare it without a conflict):
    # when nobody owns it, the command line's --checkpoint is rewritten to --colorfid-checkpoint
    # before pytest parses it; when somebody does, it is theirs, and the gate says it did not run.
    yield
    try:
        positions = _alias_positions(args)
        if not positions:
            return
        if "--checkpoint" in _option_names(parser):
            early_config.stash[_SHADOW_KEY] = True
            return
        for i in positions:
            args[i] = "--colorfid-checkpoint" + args[i][len("--checkpoint"):]
    except Exception:  # noqa: BLE001 - never break pytest over an alias
        pass


_NOT_RUN = ("colorfid gate did NOT run: --checkpoint belongs to another plugin or conftest.py here; "
            "gate the checkpoint with --colorfid-checkpoint=PATH")


# --------------------------------------------------------------------------- session


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "colorfid: a colorfid gate item (one per stress set)")
    state = _State(config)
    config.stash[_KEY] = state
    if state.shadowed and not hasattr(config, "workerinput"):
        config.issue_config_time_warning(pytest.PytestConfigWarning(_NOT_RUN), stacklevel=2)
    if not state.active:
        return
    from .errors import ColorfidError, describe

    if state.checkpoint and state.predictions:
        raise pytest.UsageError("colorfid: UsageError: give either --checkpoint or --colorfid-predictions, not both")
    _rootdir_hint(config, state)
    try:
        state.plan = _plan(config, state)
        report_dir = _get(config, "report")
        if report_dir and not hasattr(config, "workerinput"):
            from .report import check_report_dir

            check_report_dir(report_dir, gate=True)  # before the gate runs, not after
    except (ColorfidError, OSError) as exc:
        raise pytest.UsageError(f"colorfid: {describe(exc)}") from None
    config.pluginmanager.register(state, "colorfid-session")


def _rootdir_hint(config: pytest.Config, state: _State) -> None:
    """pytest fixes its rootdir (and finds its ini file) before any plugin option is known, so in
    ``--checkpoint /elsewhere/net.pth`` the path counts as a test path and can pull the rootdir up
    to a common ancestor. Say so when that seems to have happened."""
    if not state.checkpoint:
        return
    try:
        inv = Path(config.invocation_params.dir).resolve()
        ck_dir = Path(state.checkpoint).resolve().parent
        root = Path(config.rootpath).resolve()
        common = Path(os.path.commonpath([inv, ck_dir]))
    except (OSError, ValueError):
        return
    if root == common and root != inv and inv not in (ck_dir, *ck_dir.parents):
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"colorfid: pytest chose rootdir {root} because it read the checkpoint path as a test path; "
                "write --checkpoint=PATH (with '=') to keep the project's rootdir and ini file"
            ),
            stacklevel=2,
        )


def _plan(config: pytest.Config, state: _State) -> Any:
    from .gate import plan_gate

    sets = _get(config, "sets")
    return plan_gate(
        state.checkpoint,
        predictions=state.predictions,
        sets=[s.strip() for s in sets.split(",") if s.strip()] if sets else None,
        config=_get(config, "config"),
        search_dir=[config.invocation_params.dir, config.rootpath],
        baseline=_get(config, "baseline"),
        update_baseline=bool(config.getoption("colorfid_update_baseline")),
        allow_missing_baseline=True if config.getoption("colorfid_allow_missing_baseline") else None,
        device=_get(config, "device"),
        cache_dir=_get(config, "cache"),
        progress=None,
        weights=_get(config, "weights"),
    )


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_KEY, None)
    if state is not None and state.shadowed:
        return [f"colorfid: {_NOT_RUN}"]
    if state is None or state.plan is None:
        return None
    p = state.plan
    src = p.source
    what = (f"checkpoint {src.checkpoint} (sha256 {src.sha256[:12]}, weights {src.weights or 'bare state dict'})"
            if src.checkpoint else f"{src.kind} {state.predictions or src.name}")
    base = str(p.baseline_path) if p.baseline_path else "-"
    if p.update_baseline:
        base += " (updating)"
    return [
        f"colorfid: {what}",
        f"colorfid: thresholds {p.thresholds.source}; baseline {base}; sets {', '.join(p.set_names)}",
    ]


class ColorfidCollector(pytest.Collector):
    """The pseudo-collector that parents the gate items (node id ``colorfid``)."""

    def collect(self) -> list[pytest.Item]:  # never called: items are added directly
        return []


class ColorfidItem(pytest.Item):
    """One stress set of the gate: evaluate, judge, fail with a table."""

    def __init__(self, *, set_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_name = set_name
        self.add_marker("colorfid")
        self._payload: dict[str, Any] | None = None
        self._usage_error: str | None = None

    def runtest(self) -> None:
        from .errors import ColorfidError, describe
        from .gate import format_report

        state = self.config.stash[_KEY]
        try:
            results = state.plan.evaluate([self.set_name])
            report = state.plan.judge(results)
        except (ColorfidError, OSError) as exc:  # every one a usage error (pytest_exit_code), never a failed gate
            self._usage_error = describe(exc)
            raise
        # JSON round trip: only plain Python types may travel to the xdist controller.
        payload = {"set": self.set_name, "results": results.to_dict(), "gate": report.to_dict()}
        self._payload = json.loads(json.dumps(payload, allow_nan=False))
        if not report.passed:
            raise GateFailure(format_report(report, results))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from .errors import ColorfidError

        if isinstance(excinfo.value, GateFailure):
            return excinfo.value.text
        if self._usage_error is not None:
            return f"colorfid usage error (set {self.set_name!r}): {self._usage_error}"
        if isinstance(excinfo.value, ColorfidError):
            return f"colorfid: {type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"colorfid gate [{self.set_name}]"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_KEY, None)
    if state is None or state.plan is None:
        return
    parent = ColorfidCollector.from_parent(session, name="colorfid", nodeid="colorfid")
    for name in state.plan.set_names:
        items.append(ColorfidItem.from_parent(parent, name=name, nodeid=f"colorfid::{name}", set_name=name))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    if isinstance(item, ColorfidItem) and call.when == "call":
        rep = outcome.get_result()
        # Plain dicts only: under xdist these attributes travel to the controller.
        rep.colorfid = item._payload
        rep.colorfid_usage_error = item._usage_error


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_KEY, None)
    if state is not None and state.shadowed and not hasattr(config, "workerinput"):
        terminalreporter.section("colorfid")
        terminalreporter.write_line(_NOT_RUN, yellow=True, bold=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_KEY, None)
    if state is not None and config.pluginmanager.is_registered(state):
        config.pluginmanager.unregister(state)


def _write_report(results: Any, out_dir: str, gate: Any, baseline: Any = None) -> Any:
    from .errors import MissingDependencyError

    try:
        from .report import write_report
    except ImportError as exc:
        raise MissingDependencyError(f"--colorfid-report needs colorfid.report: {exc}") from None
    if baseline is None:
        return write_report(results, out_dir, gate_report=gate)
    return write_report(results, out_dir, gate_report=gate, baseline=baseline)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def colorfid_model(pytestconfig: pytest.Config) -> Any:
    """The model loaded from ``--checkpoint`` (eval mode); skips the test without one."""
    state = pytestconfig.stash.get(_KEY, None)
    if state is None or state.plan is None or state.plan.source.model is None:
        pytest.skip("colorfid_model needs --checkpoint / --colorfid-checkpoint")
    return state.plan.source.model


@pytest.fixture(scope="session")
def colorfid_evaluate(pytestconfig: pytest.Config) -> Callable[..., Any]:
    """``evaluate(sets=None, model=None, **kwargs) -> Results``: the session's model (or
    predictions), sets, protocol, device and cache unless given."""
    state = pytestconfig.stash.get(_KEY, None)
    plan = state.plan if state is not None else None

    def _evaluate(sets: Any = None, model: Any = None, **kwargs: Any) -> Any:
        from .evaluation import evaluate

        if model is None:
            if plan is None:
                pytest.skip("colorfid_evaluate needs a model argument or --checkpoint")
            model = plan.source
        if sets is None and plan is not None:
            sets = plan.sets
        kw: dict[str, Any] = dict(plan.eval_kwargs) if plan is not None else {}
        if plan is not None:
            kw["protocol"] = plan.thresholds.protocol
        kw.update(kwargs)
        return evaluate(model, sets, **kw)

    return _evaluate


@pytest.fixture(scope="session")
def colorfid_gate(pytestconfig: pytest.Config) -> Callable[..., Any]:
    """``gate(results, config=None, baseline=None, check=True, allow_missing_baseline=False)
    -> GateReport``: judge with the session's thresholds and baseline unless given; with
    ``check`` a failing gate fails the calling test with the metric table."""
    state = pytestconfig.stash.get(_KEY, None)
    plan = state.plan if state is not None else None

    def _gate(results: Any, *, config: Any = None, baseline: Any = None, check: bool = True,
              allow_missing_baseline: bool = False) -> Any:
        from .gate import format_report, judge, load_baseline, load_thresholds

        if config is not None:
            th = load_thresholds(config)
        elif plan is not None:
            th = plan.thresholds
        else:
            th = load_thresholds(None, search_dir=[pytestconfig.invocation_params.dir, pytestconfig.rootpath])
        if baseline is not None:
            base = load_baseline(baseline, allow_missing=allow_missing_baseline)
        else:
            base = plan.baseline if plan is not None else None
        report = judge(results, th, base)
        if check and not report.passed:
            pytest.fail(format_report(report, results), pytrace=False)
        return report

    return _gate
