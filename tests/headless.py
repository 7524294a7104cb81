"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): stdlib only,
no websocket, no driver, no port.

    with Chromium.launch(find_chromium()) as browser:
        page = browser.open("file:///tmp/report.html")
        page.problems          # console errors and warnings, uncaught exceptions, failed loads, as one line each
        page.evaluate("document.title")
        page.screenshot()      # PNG bytes of the whole page

Chromium reads commands from fd 3 and writes answers and events to fd 4, each a JSON object ended by a NUL byte.
Debian's chromium (`apt-get install chromium`, done by .ci/run) is what CI uses.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BrowserError", "Chromium", "Page", "find_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# As the workplace's probe starts it: no sandbox (CI runs as root), no GPU, and none of the background
# connections that a closed network would refuse.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """Chromium exited, answered a command with an error, or did not answer in time."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary: $QABOT_TEST_CHROMIUM, else the first of `CANDIDATES` on PATH."""
    given = os.environ.get("QABOT_TEST_CHROMIUM")
    if given:
        return given
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class Page:
    """One tab, loaded; `problems` lists what went wrong while it loaded and since."""

    browser: Chromium
    session: str
    problems: list[str] = field(default_factory=list)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page, beyond the viewport too."""
        shot = self.browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=self.session
        )
        return base64.b64decode(shot["data"])


class Chromium:
    """One headless Chromium process with a fresh profile; a context manager that always ends the process."""

    def __init__(self, proc: subprocess.Popen, commands: int, answers: int, profile: str, timeout_s: float) -> None:
        self.proc, self.commands, self.answers = proc, commands, answers
        self.profile, self.timeout_s = profile, timeout_s
        self._next_id = 0
        self._buffer = b""
        self._pages: dict[str, Page] = {}

    @classmethod
    def launch(cls, binary: str, *, timeout_s: float = 20.0) -> Chromium:
        profile = tempfile.mkdtemp(prefix="qa-bot-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def pipes_on_3_and_4() -> None:  # in the child, before exec: move the pipe ends where Chromium expects them
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # above 4 first, so neither overwrites the other
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # D-Bus and GPU chatter; what the page does comes over the protocol
            preexec_fn=pipes_on_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        return cls(proc, to_browser_w, from_browser_r, profile, timeout_s)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
                self.proc.wait(timeout=5)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for fd in (self.commands, self.answers):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, url: str, *, width: int = 1024, height: int = 768) -> Page:
        """A new tab showing `url`, returned once its load event has fired."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self._pages[session] = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        loaded: list[dict] = []
        self.send("Page.navigate", {"url": url}, session=session, until=loaded)
        deadline = time.monotonic() + self.timeout_s
        while not _loaded(loaded, session):
            loaded.append(self._receive(deadline))
        return page

    def send(self, method: str, params: dict | None = None, *, session: str | None = None, until=None) -> dict:
        """Send one command and return its result; events read meanwhile go to their page (and to `until`)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self.commands, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"Chromium is gone ({exc}); exit status {self.proc.poll()}") from exc
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method} failed: {answer['error']}")
                return answer.get("result", {})
            if until is not None:
                until.append(answer)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout_s:g} s")
            chunk = os.read(self.answers, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium exited (status {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        page = self._pages.get(message.get("sessionId", ""))
        if page is not None and (problem := _problem(message)):
            page.problems.append(problem)
        return message


def _loaded(events: list[dict], session: str) -> bool:
    """Whether the tab's main frame has navigated away from about:blank and then fired its load event."""
    navigated = False
    for event in events:
        if event.get("sessionId") != session:
            continue
        params = event.get("params", {})
        if event.get("method") == "Page.frameNavigated" and "parentId" not in params["frame"]:
            navigated = params["frame"]["url"] != "about:blank"
        elif event.get("method") == "Page.loadEventFired" and navigated:
            return True
    return False


def _problem(event: dict) -> str | None:
    """One line for an event that means the page did not render cleanly, else None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        description = details.get("exception", {}).get("description") or details.get("text", "")
        return f"uncaught: {description.splitlines()[0]}"  # the first line; the rest is the stack
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
        text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
        return f"console.{params['type']}: {text}"
    if method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
        entry = params["entry"]
        return f"{entry['level']} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
    return None
