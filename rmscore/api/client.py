"""A client of a running `rmscore serve`: POST /v1/score {"rows": [...]} -> {"results": [...]}.

Each result is what rmscore.Scorer.score returns for the same row, so a reward function can move
between in-process and served without changing a number. The standard library's HTTP client is
enough for one JSON request per call, so this adds no dependency.

Waiting is bounded by one `timeout` per call, retries included: a watchdog closes the connection
at the deadline, so a server that answers a byte a second cannot stretch it. A 503 (the server's
queue is full, it is still loading, or it is draining) is retried after the Retry-After it sends;
a refused or reset connection (a server restarting) is retried with a growing pause. Redirects
are not followed (the API key must never go to another address). Anything else, a malformed reply
included, is a ServerError at once, with the server's own message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from datetime import timezone

from rmscore.errors import ServerError

log = logging.getLogger("rmscore")
ROUTE = "/v1/score"
MAX_PAUSE_S = 10.0  # longest pause between tries when the server sent no Retry-After
MIN_PAUSE_S = 0.1  # "Retry-After: 0" must not turn into a busy loop of requests


class Client:
    """Scores rows on a running `rmscore serve` at `url` (its base URL, or the /v1/score URL)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 300.0):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"url {url!r} is not an http(s) URL", "e.g. url='http://127.0.0.1:8000'")
        if not timeout > 0:
            raise ServerError(f"timeout must be positive seconds, got {timeout}")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith(ROUTE) else base + ROUTE
        self.api_key = api_key if api_key is not None else os.environ.get("RMSCORE_API_KEY")
        self.timeout = timeout
        self.sleep = time.sleep  # the pause between tries (tests replace it to record the waits)
        parsed = urllib.parse.urlsplit(self.endpoint)
        self._connection = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self._netloc, self._path = parsed.netloc, parsed.path + (f"?{parsed.query}" if parsed.query else "")
        self._refusals = 0  # connection failures in a row: the pause doubles with each
        self._warned = False  # the first retry is logged; later ones would flood a training log

    def score(self, rows: list) -> list[dict]:
        """One result per output row, as the server computed it. Raises ServerError if no answer
        came within `timeout` seconds, or the server refused the request."""
        body = json.dumps({"rows": rows}).encode()
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            tries += 1
            pause, why = self._try(body, deadline)
            if pause is None:
                return why
            left = deadline - time.monotonic()
            if pause > left:
                busy = why.startswith("503")
                asked = f"; the server asks to retry in {pause:g}s, past the {max(left, 0):.0f}s left of " \
                        f"timeout={self.timeout:g}" if busy else ""
                raise ServerError(f"{self.endpoint}: {why}{asked}; gave up after {tries} tries in {self.timeout:g}s",
                                  "raise timeout=, or give the server more capacity" if busy else _hint(None))
            if not self._warned:
                self._warned = True
                log.warning("rmscore: %s: %s; retrying for up to %.0fs (logged once)", self.endpoint, why, left)
            self.sleep(pause)

    def _try(self, body: bytes, deadline: float):
        """One request: (None, results) on success, or (pause before the next try, why not)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        left = max(deadline - time.monotonic(), 0.001)
        conn = self._connection(self._netloc, timeout=left)
        watchdog = Watchdog(conn, left)
        try:
            conn.connect()
            watchdog.sock = conn.sock  # kept: the connection forgets it once a reply says "close"
            conn.request("POST", self._path, body, headers)
            response = conn.getresponse()
            status, raw = response.status, response.read()
        except OSError as err:  # http.client.HTTPException is not one: a broken reply is below
            if watchdog.fired or isinstance(err, TimeoutError):
                raise ServerError(f"{self.endpoint}: no answer within {self.timeout:g}s", _hint(None)) from None
            if isinstance(err, (ConnectionError, FileNotFoundError)):
                # Scoring has no side effects, so a request lost with its connection is simply sent again.
                return self._pause(), f"cannot connect ({err})" if not watchdog.connected else f"connection lost ({err})"
            raise ServerError(f"cannot reach {self.endpoint}: {err}", _hint(None)) from None
        except http.client.HTTPException as err:
            if watchdog.fired:
                raise ServerError(f"{self.endpoint}: no answer within {self.timeout:g}s", _hint(None)) from None
            return self._pause(), f"connection lost ({type(err).__name__}: {err})"
        finally:
            watchdog.cancel()
            conn.close()
        if status == 200:
            return None, self._results(raw)
        message = _message(raw, response.reason)
        if 300 <= status < 400:
            raise ServerError(f"{self.endpoint} answered {status} (a redirect to {response.getheader('Location')}): "
                              "redirects are not followed, so the API key never goes elsewhere",
                              "give url= the address the server is at")
        if status != 503:
            raise ServerError(f"{self.endpoint} answered {status}: {message}", _hint(status))
        return retry_after(response.getheader("Retry-After"), time.time()), f"503 {message}"

    def _pause(self) -> float:
        self._refusals += 1
        return min(MAX_PAUSE_S, 0.25 * 2 ** min(self._refusals, 6))

    def _results(self, raw: bytes) -> list[dict]:
        try:
            results = json.loads(raw)["results"]
            if not isinstance(results, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{self.endpoint} answered without a results list: {raw[:200]!r}",
                              "is this URL an rmscore serve?") from None
        for i, result in enumerate(results):
            problem = _malformed(result)
            if problem:
                raise ServerError(f"{self.endpoint} answered a malformed result {i}: {problem}",
                                  "is this URL an rmscore serve, of this rmscore's version?")
        self._refusals = 0
        return results


class Watchdog:
    """Shuts the connection down at the deadline: the one bound on a whole call (a socket timeout
    bounds each read only, and a server sending a byte a second never trips it)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.conn, self.fired, self.sock = conn, False, None
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def _fire(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self.timer.cancel()


def _malformed(result) -> str | None:
    """What is wrong with one result of /v1/score, if anything."""
    if not isinstance(result, dict):
        return f"{json.dumps(result)[:80]} is not an object"
    if not isinstance(result.get("status"), str):
        return f"its status is {json.dumps(result.get('status'))[:80]}, not a string"
    score = result.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        return f"its score is {json.dumps(score)[:80]}, not a number"
    return None


def retry_after(value: str | None, now: float) -> float:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); 1 if absent."""
    if not value:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return max(MIN_PAUSE_S, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(MIN_PAUSE_S, when.timestamp() - now)


def _message(raw: bytes, reason: str) -> str:
    """The server's error message ({"error": {"message": ...}}), else the start of the body."""
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode(errors="replace") or reason or ""


def _hint(code: int | None) -> str:
    if code == 401:
        return "pass api_key= (or set RMSCORE_API_KEY) to the key given to rmscore serve --api-key"
    if code == 404:
        return "is this URL an rmscore serve? it should answer POST /v1/score"
    if code is None:
        return "is rmscore serve running there? start it with: rmscore serve -m MODEL --port PORT"
    return "the message says what the server refused"
