"""Running `rmscore serve` in tests: on 127.0.0.1 only, on a port the OS picked, every wait bounded.

`running()` serves in this process (a uvicorn thread: real HTTP, no second torch import);
`spawned()` runs the real CLI in a child process, for what needs real signals.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlparse

from rmscore.config import BatchConfig, ModelConfig, ServeConfig

KEY = "test-key"


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Client:
    def __init__(self, url: str, key: str | None = KEY):
        parsed = urlparse(url)
        self.host, self.port, self.key = parsed.hostname, parsed.port, key

    def request(self, method: str, path: str, body=None, key: str | None = "default", raw: bytes | None = None):
        """(status, headers, parsed JSON or text)."""
        key = self.key if key == "default" else key
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            kind = response.getheader("content-type", "")
            return response.status, dict(response.getheaders()), json.loads(text) if "json" in kind else text
        finally:
            conn.close()

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def metrics(self) -> dict[str, float]:
        status, _, text = self.get("/metrics")
        assert status == 200, text
        return parse_metrics(text)

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@contextmanager
def running(model_dir, key: str | None = KEY, budget: int | None = 4096, batch: dict | None = None,
            model: dict | None = None, **serve_kw):
    """An in-process server on a free port; yields a Client once /health says ready. `model`:
    ModelConfig options (model_type, ...)."""
    from rmscore.serve.server import bind, build, url_of

    sock = bind("127.0.0.1", 0)
    cfg = ServeConfig(port=0, api_key=key, **serve_kw)
    batch_cfg = BatchConfig(max_tokens_per_batch=budget, **(batch or {}))
    server = build(ModelConfig(str(model_dir), **(model or {})), batch_cfg, cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    client = Client(url_of(sock), key)
    client.server = server
    try:
        wait_for(lambda: _ready(client), 60, "the server to load")
        yield client
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the server thread did not stop"


def _ready(client: Client) -> bool:
    if client.server.service.load_error is not None:
        raise client.server.service.load_error
    try:
        return client.get("/health")[0] == 200
    except OSError:
        return False


@contextmanager
def spawned(model_dir, *args: str):
    """`rmscore serve` as a child process; yields (process, Client, stderr lines so far)."""
    env = {**os.environ, "RMSCORE_API_KEY": KEY, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "rmscore", "serve", "-m", str(model_dir), "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        url = wait_for(lambda: _url(lines, proc), 120, "the server to listen")
        client = Client(url)
        wait_for(lambda: _up(client), 120, "the server to load")
        yield proc, client, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def _url(lines: list[str], proc) -> str | None:
    if proc.poll() is not None:
        raise AssertionError(f"rmscore serve exited {proc.returncode}: {''.join(lines)}")
    found = [m.group(1) for line in lines if (m := re.search(r"listening on (http://\S+?);", line))]
    return found[0] if found else None


def _up(client: Client) -> bool:
    try:
        return client.get("/health")[0] == 200
    except OSError:
        return False


def raw_request(client: Client, path: str, body: bytes, send: int | None = None):
    """A socket that sent the headers and the first `send` bytes of the body (all if None)."""
    import socket

    sock = socket.create_connection((client.host, client.port), timeout=60)
    head = (f"POST {path} HTTP/1.1\r\nHost: {client.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {client.key}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:send if send is not None else len(body)])
    return sock


def read_response(sock) -> tuple[int, dict]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.I)
        if length and len(body) >= int(length.group(1)):
            break
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.partition(b"\r\n\r\n")[2] or b"null")
