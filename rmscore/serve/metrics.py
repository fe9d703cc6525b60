"""Prometheus metrics of one server, in its own registry (GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Padded tokens per forward: from a few hundred (CPU) to the 64k GPU default and beyond.
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ROUTES = ("/v1/score", "/get_reward", "/classify", "/v1/classify", "/pooling", "/health", "/v1/models", "/metrics")


class Metrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("rmscore_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=registry)
        self.batches = Counter("rmscore_batches", "Forward batches run on the device", registry=registry)
        self.tokens = Counter("rmscore_tokens", "Tokens of the rows scored (padding and reused prompts "
                              "not subtracted)", registry=registry)
        self.rows = Counter("rmscore_rows", "Rows answered, by status", ["status"], registry=registry)
        self.dropped = Counter("rmscore_dropped_rows", "Rows dropped before compute because their client had gone",
                               registry=registry)
        self.errors = Counter("rmscore_batch_errors", "Takes or rows whose scoring raised (then retried row by row)",
                              registry=registry)
        self.queue_depth = Gauge("rmscore_queue_depth", "Rows waiting for the device", registry=registry)
        self.pending = Gauge("rmscore_rows_pending", "Rows admitted and not yet answered (--max-queue bounds it)",
                             registry=registry)
        self.in_flight = Gauge("rmscore_requests_in_flight", "HTTP requests being read, queued or scored",
                               registry=registry)
        self.batch_tokens = Histogram("rmscore_batch_tokens", "Padded tokens per forward batch",
                                      buckets=TOKEN_BUCKETS, registry=registry)
        self.take_requests = Histogram("rmscore_take_requests", "Requests whose rows one device turn scored "
                                       "together", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry)
        self.latency = Histogram("rmscore_request_latency_seconds", "Time from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)

    def batch(self, cost) -> None:
        """One forward batch ran (called on the device thread; prometheus_client is thread-safe)."""
        self.batches.inc()
        self.tokens.inc(cost.real)
        self.batch_tokens.observe(cost.padded)

    def answered(self, route: str, code: int, seconds: float) -> None:
        route = route if route in ROUTES else "other"  # unknown paths must not grow the label set
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
