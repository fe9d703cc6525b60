"""A client of a running `rmscore serve`: POST /v1/score {"rows": [...]} -> {"results": [...]}.

Each result is what rmscore.Scorer.score returns for the same row, so a reward function can move
between in-process and served without changing a number. The standard library's HTTP client is
enough for one JSON request per call, so this adds no dependency.

Waiting is bounded by one `timeout` per call, retries included. A 503 (the server's queue is full,
it is still loading, or it is draining) is retried after the Retry-After it sends; a refused or
reset connection (a server restarting) is retried with a growing pause. Anything else is a
ServerError at once, with the server's own message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
import urllib.error
import urllib.request
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
        self._opener = urllib.request.build_opener()
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
                raise ServerError(f"{self.endpoint}: {why}; gave up after {tries} tries in {self.timeout:g}s",
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
        request = urllib.request.Request(self.endpoint, body, headers, method="POST")
        left = max(deadline - time.monotonic(), 0.001)
        try:
            with self._opener.open(request, timeout=left) as response:
                return None, self._results(response.read())
        except urllib.error.HTTPError as err:
            message = _message(err)
            if err.code != 503:
                raise ServerError(f"{self.endpoint} answered {err.code}: {message}", _hint(err.code)) from None
            return retry_after(err.headers.get("Retry-After"), time.time()), f"503 {message}"
        except urllib.error.URLError as err:
            if isinstance(err.reason, (ConnectionError, FileNotFoundError)):
                return self._pause(), f"cannot connect ({err.reason})"
            if isinstance(err.reason, TimeoutError):
                raise ServerError(f"{self.endpoint}: no answer within {self.timeout:g}s", _hint(None)) from None
            raise ServerError(f"cannot reach {self.endpoint}: {err.reason}", _hint(None)) from None
        except (ConnectionError, TimeoutError) as err:  # raised while reading the answer
            # Scoring has no side effects, so a request lost with its connection is simply sent again.
            if isinstance(err, TimeoutError):
                raise ServerError(f"{self.endpoint}: no answer within {self.timeout:g}s", _hint(None)) from None
            return self._pause(), f"connection lost ({err})"

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
        self._refusals = 0
        return results


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


def _message(err: urllib.error.HTTPError) -> str:
    """The server's error message ({"error": {"message": ...}}), else the start of the body."""
    try:
        raw = err.read()
    except OSError:
        return err.reason or ""
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode(errors="replace") or str(err.reason)


def _hint(code: int | None) -> str:
    if code == 401:
        return "pass api_key= (or set RMSCORE_API_KEY) to the key given to rmscore serve --api-key"
    if code == 404:
        return "is this URL an rmscore serve? it should answer POST /v1/score"
    if code is None:
        return "is rmscore serve running there? start it with: rmscore serve -m MODEL --port PORT"
    return "the message says what the server refused"
