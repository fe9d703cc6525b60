"""Running the app under uvicorn: one process, one model, one device; graceful on SIGTERM/SIGINT.

The first SIGTERM or SIGINT starts a drain: new requests get 503 with Retry-After (so callers move
to another replica) while everything already received is scored and answered; the process exits 0
once nothing is in flight. A second signal exits at once.
"""

from __future__ import annotations

import socket

import uvicorn

from rmscore.config import BatchConfig, ModelConfig, ServeConfig
from rmscore.errors import ConfigError
from rmscore.serve.app import create_app
from rmscore.serve.service import Service


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        service.on_fatal = self.stop

    def stop(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig, frame) -> None:
        # Not uvicorn's: it closes the listening socket at once, so late callers would get
        # "connection refused" instead of a 503 they know to retry; it also re-raises the signal.
        if self.service.draining or self.should_exit:
            self.should_exit = self.force_exit = True
        else:
            self.service.draining = True

    async def on_tick(self, counter: int) -> bool:
        if self.service.draining and self.service.idle():
            self.should_exit = True
        return await super().on_tick(counter)


def build(model_cfg: ModelConfig, batch_cfg: BatchConfig, cfg: ServeConfig, log=lambda text: None):
    """The server, not yet started: run it with .run(sockets=[bind(...)])."""
    service = Service(model_cfg, batch_cfg, cfg, log)
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=30)
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
    log("stopped: every request received was answered")
