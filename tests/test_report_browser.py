"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is the system package (Debian's ``chromium``; .ci/run installs it) — nothing is
downloaded. It is driven over ``--remote-debugging-pipe`` (JSON messages on file descriptors
3 and 4, NUL-separated), so no port, no websocket library and no chromedriver are needed.
The tests skip, saying why, only where no Chromium executable is found.

Checked: no console errors or exceptions (CSP violations included), every ``<img>`` decoded
(naturalWidth > 0), the swipe slider moves (input events change the clip), no request other
than the page itself and ``data:`` URIs, the core view with JavaScript disabled, and printing.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

try:  # tests/ is on sys.path under pytest's default import mode
    from test_report import make_report
except ImportError:  # pragma: no cover - package-style test layout
    from tests.test_report import make_report

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """A Chromium/Chrome executable: $COLORFID_CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("COLORFID_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Minimal DevTools-protocol client over --remote-debugging-pipe (one page, flat sessions)."""

    FLAGS = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    )

    def __init__(self, exe: str, *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="colorfid-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()

        def wire_fds() -> None:  # runs in the child: its fd 3 reads commands, fd 4 writes replies
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [exe, *self.FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire_fds, close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    # -- protocol
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child_r], [], [], left)
            if ready:
                chunk = os.read(self._from_child_r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                    raise RuntimeError(f"Chromium closed the DevTools pipe: {err[-2000:]}")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        for fd in (self._to_child_w, self._from_child_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- what the tests look at
    def problems(self) -> list[str]:
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('exception', {}).get('description')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                out.append(f"loading failed: {p.get('errorText')} {p.get('blockedReason', '')}")
        return out

    def requested_urls(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events if ev.get("method") == "Network.requestWillBeSent"]


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium executable (install Debian's `chromium` package, or set COLORFID_CHROMIUM); "
    "the report's browser checks need a real browser and nothing is downloaded",
)


@pytest.fixture(scope="module")
def report_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index, _, _ = make_report(tmp_path_factory.mktemp("browser"), n_checkpoints=3)
    return index


@pytest.fixture()
def browser() -> Any:
    b = Chromium(CHROMIUM)  # type: ignore[arg-type]
    try:
        b.open_page()
        yield b
    finally:
        b.close()


_IMAGES_DECODED = """
Promise.all(Array.from(document.images).map(function (im) {
  return im.decode().then(function () { return null; }, function () { return im.alt; });
})).then(function (bad) {
  return {n: document.images.length,
          failed: bad.filter(function (x) { return x !== null; }),
          zero: Array.from(document.images).filter(function (im) { return !(im.naturalWidth > 0); }).map(function (im) { return im.alt; })};
})
"""


def test_report_in_chromium(browser: Chromium, report_index: Path) -> None:
    url = report_index.resolve().as_uri()
    browser.navigate(url)
    imgs = browser.eval(_IMAGES_DECODED)
    assert imgs["n"] >= 3 * 2 * 7 and imgs["failed"] == [] and imgs["zero"] == [], imgs
    # the slider: built by the script, moves with input events
    swipes = browser.eval("document.querySelectorAll('figure.swipe:not([hidden])').length")
    assert swipes == browser.eval("document.querySelectorAll('figure.swipe').length") >= 3
    state = browser.eval(
        """(function () {
          var f = document.querySelector('figure.swipe'), r = f.querySelector('input[type=range]');
          var top = f.querySelector('img.swipe-b'), bar = f.querySelector('.swipe-bar');
          var before = getComputedStyle(top).clipPath, barBefore = bar.getBoundingClientRect().left;
          r.value = 20; r.dispatchEvent(new Event('input', {bubbles: true}));
          var mid = getComputedStyle(top).clipPath, barMid = bar.getBoundingClientRect().left;
          r.value = 85; r.dispatchEvent(new Event('input', {bubbles: true}));
          return {before: before, mid: mid, after: getComputedStyle(top).clipPath,
                  barBefore: barBefore, barMid: barMid, barAfter: bar.getBoundingClientRect().left,
                  w: top.getBoundingClientRect().width, h: top.getBoundingClientRect().height,
                  wa: f.querySelector('img.swipe-a').getBoundingClientRect().width};
        })()"""
    )
    assert state["before"] == "inset(0px 0px 0px 50%)", state
    assert state["mid"] == "inset(0px 0px 0px 20%)", state
    assert state["after"] == "inset(0px 0px 0px 85%)", state
    assert state["barMid"] < state["barBefore"] < state["barAfter"], state
    assert state["w"] > 100 and state["h"] > 50 and abs(state["w"] - state["wa"]) < 1, state
    # nothing but the page itself and data: URIs was requested
    urls = browser.requested_urls()
    assert url in urls
    assert [u for u in urls if u != url and not u.startswith("data:")] == []
    assert browser.problems() == []
    # printing works (the print stylesheet applies); the PDF is a real PDF
    pdf = base64.b64decode(browser.send("Page.printToPDF", {"printBackground": True})["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    assert browser.problems() == []


def test_report_without_javascript(browser: Chromium, report_index: Path) -> None:
    browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.navigate(report_index.resolve().as_uri())
    # Runtime.evaluate still runs (DevTools), the page's own script did not
    assert browser.eval("document.querySelectorAll('figure.swipe:not([hidden])').length") == 0
    assert browser.eval("document.querySelectorAll('img.swipe-b').length") == 0
    imgs = browser.eval(_IMAGES_DECODED)
    assert imgs["failed"] == [] and imgs["zero"] == [], imgs
    # output and GT of every worst image are visible, side by side in one row of the strip
    rows = browser.eval(
        """Array.from(document.querySelectorAll('article.card')).map(function (c) {
          var o = c.querySelector('img[id$="-output"]').getBoundingClientRect();
          var g = c.querySelector('img[id$="-gt"]').getBoundingClientRect();
          return {same_row: Math.abs(o.top - g.top) < 2, left_of: o.right <= g.left, w: o.width};
        })"""
    )
    assert rows and all(r["same_row"] and r["left_of"] and r["w"] > 50 for r in rows), rows
    assert browser.problems() == []
