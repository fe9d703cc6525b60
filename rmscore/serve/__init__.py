"""`rmscore serve`: one reward model behind an HTTP endpoint, with dynamic token-budgeted batching.

  server.py    uvicorn, the listening socket, drain on SIGTERM/SIGINT
  app.py       the routes (ours, OpenRLHF's /get_reward, vLLM's /classify and /pooling, service routes)
  guard.py     API key, Content-Type, body size and read timeout, requests in flight (an ASGI middleware)
  limits.py    a body's lists, values, nesting and strings checked before it is parsed
  service.py   loading, admission, rows counted as they expand, tokenizing, results
  lengths.py   texts too long to ever fit cut before they are tokenized
  batcher.py   the admission line, the one queue and the device thread (torch-free)
  schemas.py   strict request bodies; protocols.py: answers in OpenRLHF's and vLLM's shapes
  metrics.py   Prometheus counters, gauges and histograms

Its dependencies are the `serve` extra; nothing here is imported by the other commands.
"""

from __future__ import annotations

from importlib.util import find_spec

from rmscore.errors import ConfigError

DEPENDENCIES = ("fastapi", "uvicorn", "prometheus_client")


def require() -> None:
    """One line with the pip command when the serve extra is not installed."""
    missing = [name for name in DEPENDENCIES if find_spec(name) is None]
    if missing:
        raise ConfigError(f"rmscore serve needs {', '.join(missing)}: pip install 'rmscore[serve]'")
