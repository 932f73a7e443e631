"""Headless Chromium driven over the DevTools protocol on a pipe (no port, no websocket library).

``with Chromium.start() as browser: page = browser.load(url)`` opens ``url`` in a fresh tab,
waits for its load event, and returns a :class:`PageLoad`: console errors and uncaught
exceptions, log entries of level error, failed requests, every requested URL, the state of
every ``<img>``, and a full-page PNG screenshot.  Chromium reads protocol messages on fd 3
and writes them on fd 4, NUL-terminated (``--remote-debugging-pipe``).
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
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe")

IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
             "width: i.naturalWidth, height: i.naturalHeight})))")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    url: str
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    title: str = ""
    screenshot_png: bytes = b""

    @property
    def problems(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors + self.failed_requests


class Chromium:
    def __init__(self, process: subprocess.Popen, to_browser, from_browser, user_data_dir: str):
        self.process = process
        self._out = to_browser
        self._in = from_browser
        self._buffer = b""
        self._next_id = 0
        self.user_data_dir = user_data_dir
        self.events: list[dict] = []

    @classmethod
    def start(cls, binary: str | None = None, stderr_path: Path | None = None) -> Chromium:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("no chromium binary on the PATH")
        user_data_dir = tempfile.mkdtemp(prefix="faasload-chromium-")
        browser_reads, we_write = os.pipe()
        we_read, browser_writes = os.pipe()

        def wire_fds():  # in the child, before exec: its fds 3 and 4 are the protocol pipe
            high_read = fcntl.fcntl(browser_reads, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            high_write = fcntl.fcntl(browser_writes, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                   pass_fds=(3, 4), preexec_fn=wire_fds,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        if stderr_path:
            stderr.close()
        os.close(browser_reads)
        os.close(browser_writes)
        return cls(process, os.fdopen(we_write, "wb", buffering=0), os.fdopen(we_read, "rb", buffering=0),
                   user_data_dir)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._in], [], [], remaining)
            if ready:
                chunk = self._in.read(1 << 16)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit status {self.process.poll()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict:
        self._next_id += 1
        message: dict = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    # ------------------------------------------------------------------ a page

    def load(self, url: str, *, width: int = 1280, height: int = 900, settle_s: float = 0.5) -> PageLoad:
        """Open ``url`` in a new tab, wait for its load event, collect what happened."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session, timeout_s=60)
        time.sleep(settle_s)  # late console messages; then drain what already arrived
        self.call("Runtime.evaluate", {"expression": "1"}, session=session)
        page = PageLoad(url)
        page.images = json.loads(self.call("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                           session=session)["result"]["value"])
        page.title = self.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                               session=session)["result"]["value"]
        metrics = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": metrics["height"], "scale": 1}}, session=session)
        page.screenshot_png = base64.b64decode(shot["data"])
        self._collect(page, session)
        self.call("Target.closeTarget", {"targetId": target})
        return page

    def _collect(self, page: PageLoad, session: str) -> None:
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                page.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                page.exceptions.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                page.log_errors.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")
            elif method == "Network.requestWillBeSent":
                page.requested_urls.append(params["request"]["url"])
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                page.failed_requests.append(f"{params.get('type')}: {params.get('errorText')}")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=10)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()
        self._in.close()
        shutil.rmtree(self.user_data_dir, ignore_errors=True)
