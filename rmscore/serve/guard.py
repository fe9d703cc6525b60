"""What every request passes before a route sees it (a plain ASGI middleware).

  - the API key (Bearer, the scheme in any case), on every route but /health;
  - shutting down: 503 with Retry-After, so callers retry on another replica;
  - a POST body must say Content-Type: application/json (415): a web page's cross-origin "simple"
    POST (text/plain) cannot reach a server on localhost without a key;
  - the body read here, whole and bounded: over --max-body-mb is a 413, and the bodies held at once
    stay under BODY_BUDGETS of that (503 past it), so memory is bounded whatever the load; a body
    not all in within --read-timeout is a 408, so a slow client cannot hold a request open;
  - requests in flight counted (SIGTERM waits for them) and each one cancellable: a drain cut short
    (server.py) answers those not yet answered 503; each answer counted and timed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

BODY_BUDGETS = 4  # request bodies held in memory at once, in --max-body-mb


def error_body(status: int, message: str) -> bytes:
    kind = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 408: "timeout", 413: "too_large",
            415: "unsupported_media_type", 503: "unavailable"}.get(status, "error")
    return json.dumps({"error": {"code": status, "type": kind, "message": message}}).encode()


async def reply(send, status: int, message: str, headers: dict | None = None) -> None:
    body = error_body(status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, service):
        self.app, self.service = app, service
        self.max_body = int(service.cfg.max_body_mb * 2**20)
        key = service.cfg.api_key
        self.key = key.encode() if key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.monotonic(), [None]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        service = self.service
        service.in_flight += 1
        work = asyncio.ensure_future(self._guarded(scope, receive, counted_send))
        service.requests.add(work)
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:  # uvicorn gave up on the connection
            work.cancel()
            raise
        finally:
            service.requests.discard(work)
            service.in_flight -= 1
        try:
            if work.cancelled():  # the drain was cut short (server.py) before this was answered
                if status[0] is None:
                    await reply(counted_send, 503, "shutting down: the drain timed out before this request was "
                                               "answered; retry on another replica", {"retry-after": 1})
                return
            work.result()  # its exception, if any, to uvicorn
        finally:
            service.metrics.answered(scope["path"], status[0] or 500, time.monotonic() - start)

    async def _guarded(self, scope, receive, send):
        service, path = self.service, scope["path"]
        if path != "/health":
            if self.key and not self._authorized(_header(scope, b"authorization")):
                return await reply(send, 401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                   {"www-authenticate": "Bearer"})
            if service.draining:
                return await reply(send, 503, "shutting down: retry on another replica", {"retry-after": 5})
            kind = _header(scope, b"content-type").split(b";")[0].strip().lower()
            if scope.get("method") == "POST" and kind != b"application/json":
                return await reply(send, 415, f"the body must be sent as Content-Type: application/json, not "
                                              f"{kind.decode('latin-1') or 'none'}")
        held = [0]
        try:
            body = await self._read(scope, receive, send, held)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            service.body_bytes -= held[0]

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.strip().partition(b" ")  # auth schemes are case-insensitive (RFC 9110)
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def _read(self, scope, receive, send, held: list[int]) -> bytes | None:
        """The whole body, or None once a 408/413/503 has been sent."""
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_body:
            await reply(send, 413, f"the body has {int(declared):,} bytes; the limit is {self.max_body:,} "
                                   "(--max-body-mb): split the request")
            return None
        chunks, deadline = [], time.monotonic() + self.service.cfg.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                await reply(send, 408, f"the body did not arrive within {self.service.cfg.read_timeout_s:g}s "
                                       f"({held[0]:,} bytes came; --read-timeout)", {"connection": "close"})
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if held[0] + len(chunk) > self.max_body:
                await reply(send, 413, f"the body is over the limit of {self.max_body:,} bytes (--max-body-mb)")
                return None
            if chunk and self.service.body_bytes + len(chunk) > BODY_BUDGETS * self.max_body:
                await reply(send, 503, "too many large requests at once", {"retry-after": 1})
                return None
            self.service.body_bytes += len(chunk)
            held[0] += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _header(scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return b""


def _replay(body: bytes, receive):
    """The body once, then the real receive: it waits, and says http.disconnect when the client goes."""
    sent = [False]

    async def replayed():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
