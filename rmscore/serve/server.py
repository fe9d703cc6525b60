"""Running the app under uvicorn: one process, one model, one device; graceful on SIGTERM/SIGINT.

The first SIGTERM or SIGINT starts a drain: new requests get 503 with Retry-After (so callers move
to another replica) while everything already received is scored and answered; the process exits 0
once nothing is in flight. Past --drain-timeout, or at a second signal, the drain is cut short:
each request not yet answered gets 503, the log says how many, and serve() raises (exit code 2).
A third signal exits at once.
"""

from __future__ import annotations

import socket
import sys
import time

import uvicorn

from rmscore.config import BatchConfig, ModelConfig, ServeConfig
from rmscore.errors import ConfigError, ServerError
from rmscore.serve.app import create_app
from rmscore.serve.service import Service


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        service.on_fatal = self.stop
        self.deadline: float | None = None  # when the drain is cut short
        self.cut = 0  # requests the cut answered 503

    def stop(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig, frame) -> None:
        # Not uvicorn's: it closes the listening socket at once, so late callers would get
        # "connection refused" instead of a 503 they know to retry; it also re-raises the signal.
        # A signal handler only sets flags: on_tick, on the event loop, acts on them.
        if self.should_exit or (self.service.draining and self.deadline == 0):
            self.should_exit = self.force_exit = True
        elif self.service.draining:
            self.deadline = 0
        else:
            self.service.draining = True
            self.deadline = time.monotonic() + self.service.cfg.drain_timeout_s

    async def on_tick(self, counter: int) -> bool:
        service = self.service
        if service.draining and not self.should_exit:
            if self.deadline is not None and time.monotonic() >= self.deadline and not self.cut:
                self.cut = service.cut_short()
                if self.cut:
                    service.log(f"the drain was cut short: {self.cut} request(s) not yet answered got 503")
            if service.idle() or (self.cut and service.in_flight == 0):
                self.should_exit = True
        return await super().on_tick(counter)


def build(model_cfg: ModelConfig, batch_cfg: BatchConfig, cfg: ServeConfig, log=lambda text: None):
    """The server, not yet started: run it with .run(sockets=[bind(...)])."""
    service = Service(model_cfg, batch_cfg, cfg, log)
    # timeout_graceful_shutdown: a backstop only; the drain (on_tick) has answered everything by then.
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=30, timeout_graceful_shutdown=5)
    return DrainingServer(config, service)


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          "pick another --port (0: any free one), or stop what uses it") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(model_cfg: ModelConfig, batch_cfg: BatchConfig, cfg: ServeConfig, log=print) -> None:
    """Listen, load the model, serve until SIGTERM/SIGINT. A model that fails to load raises here."""
    # The event loop shares the GIL with the tokenizing, parsing and device threads; a 1 ms switch
    # interval (Python's default: 5) lets it answer /health within milliseconds while they work.
    sys.setswitchinterval(0.001)
    sock = bind(cfg.host, cfg.port)
    url = url_of(sock)
    server = build(model_cfg, batch_cfg, cfg, log)
    service = server.service
    service.on_ready = lambda: log(f"ready: {url} ({service.engine.family}; POST /v1/score, /get_reward, "
                                   "/classify, /pooling)")
    log(f"listening on {url}; loading {model_cfg.path} (GET /health says 503 until it is ready)")
    server.run(sockets=[sock])
    if service.load_error is not None:
        raise service.load_error
    if server.cut:
        raise ServerError(f"the drain was cut short: {server.cut} request(s) not yet answered got 503",
                          f"give them longer with --drain-timeout (it was {cfg.drain_timeout_s:g}s)")
    log("stopped: every request received was answered")
