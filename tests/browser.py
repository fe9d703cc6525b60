"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no
Python package needed, only the browser. Tests use it to open report.html for real: console
errors, network requests, the DOM after the page's script ran, clicks, screenshots.

Which browser: $RMSCORE_CHROMIUM, else the first of chromium, chromium-browser, google-chrome on
PATH (Debian: apt-get install chromium). `find()` returns None when there is none, for a skip.

Also a command: python tests/browser.py screenshot PAGE.html OUT.png [WIDTH HEIGHT]
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = ("no Chromium found (none of chromium, chromium-browser, google-chrome on PATH, and RMSCORE_CHROMIUM "
           "unset or not executable): apt-get install chromium (Debian), or set RMSCORE_CHROMIUM=/path/to/chrome")


def find() -> str | None:
    if os.environ.get("RMSCORE_CHROMIUM"):
        return shutil.which(os.environ["RMSCORE_CHROMIUM"])
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _high(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Browser:
    """One headless browser with one page. `events` holds every protocol event received."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.TemporaryDirectory(prefix="rmscore-chromium-")
        to_browser, self._in = os.pipe()  # the browser reads commands on its fd 3
        self._out, from_browser = os.pipe()  # and writes replies on its fd 4
        # Above fd 9 first: dup2(A, 3) would clobber B if B were 3 (as under pytest's capture).
        to_browser, from_browser = (_high(fd) for fd in (to_browser, from_browser))
        args = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={self.profile.name}"]
        def as_fd_3_and_4():  # in the child, before exec; our own fds are close-on-exec (PEP 446)
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.proc = subprocess.Popen([binary, *args], preexec_fn=as_fd_3_and_4, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(Path(self.profile.name) / "stderr.log", "wb"))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next, self.events, self.pages = b"", 0, [], set()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 30) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._in, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError("no reply from the browser")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                log = (Path(self.profile.name) / "stderr.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the browser closed its pipe; its stderr ends:\n{log}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, path: Path, timeout: float = 30) -> None:
        """Loads a file and waits for its load event."""
        seen, url = len(self.events), Path(path).resolve().as_uri()
        self.pages.add(url)
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]):
            self.events.append(self._read(deadline - time.monotonic()))
        self.eval("0")  # one more round trip: events the load caused have arrived

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and browser log errors (CSP violations)."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params["exceptionDetails"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                out.append(params["entry"]["text"])
        return out

    def requests(self) -> list[str]:
        """URLs the page requested, other than its own file and data: URIs."""
        urls = [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]
        return [u for u in urls if not u.startswith("data:") and u not in self.pages]

    def screenshot(self, path: Path, full: bool = False) -> Path:
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full}, session=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._in)
        os.close(self._out)
        self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "screenshot":
        sys.exit(__doc__)
    binary = find() or sys.exit(INSTALL)
    size = [int(v) for v in sys.argv[4:6]] or [1280, 900]
    with Browser(binary, *size) as browser:
        browser.open(Path(sys.argv[2]))
        if browser.errors() or browser.requests():
            sys.exit(f"page errors {browser.errors()} or requests {browser.requests()}")
        print(browser.screenshot(Path(sys.argv[3])))
