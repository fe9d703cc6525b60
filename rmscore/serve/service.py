"""One reward model serving many clients: loading, admission, tokenizing, and the device batcher.

A request's rows are numbered from a server-wide counter (so rows of different requests never
share a key inside one take), counted as they expand, admitted against --max-queue in arrival
order, tokenized on one background thread in chunks (a large request reaches the device before it
is all tokenized; a text too long to ever fit is cut first, lengths.py), and queued for the device
thread (rmscore/serve/batcher.py). Everything that scores goes through the engine's Scorer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rmscore.config import BatchConfig, ModelConfig, ServeConfig
from rmscore.errors import InputError
from rmscore.score.summary import RunSummary
from rmscore.serve import lengths, protocols
from rmscore.serve.batcher import Batcher, Item, Overloaded, Ticket
from rmscore.serve.limits import TooLarge
from rmscore.serve.metrics import Metrics

CHUNK = 256  # rows tokenized per step
ADMIT_WAIT_S = 30.0  # a request waits this long in the admission line, then gets 503 with Retry-After


class NotReady(Exception):
    """Loading, failed or shutting down: 503 with Retry-After."""

    def __init__(self, state: str, retry_after: int = 5):
        super().__init__(f"the server is {state}")
        self.state, self.retry_after = state, retry_after


class UnknownModel(Exception):
    """A request named another model: 404, as vLLM answers."""


@dataclass
class ServeSummary(RunSummary):
    """The scorer's counters, with every forward batch also reported to the metrics."""

    on_batch: Callable = lambda cost: None

    def count_batch(self, cost) -> None:
        super().count_batch(cost)
        self.on_batch(cost)


class Service:
    def __init__(self, model_cfg: ModelConfig, batch_cfg: BatchConfig, cfg: ServeConfig, log=lambda text: None):
        self.model_cfg, self.batch_cfg, self.cfg, self.log = model_cfg, batch_cfg, cfg, log
        self.metrics = Metrics()
        self.engine = None
        self.cutter: lengths.Cutter | None = None
        self.batcher: Batcher | None = None
        self.load_error: BaseException | None = None
        self.draining = False
        self.in_flight = 0  # HTTP requests inside the app (SIGTERM waits for 0)
        self.requests: set[asyncio.Task] = set()  # their tasks (guard.py), for cut_short
        self.body_bytes = 0  # bytes of request bodies held in memory right now
        self.on_fatal: Callable[[], None] = lambda: None  # set by the server: stop it
        self.on_ready: Callable[[], None] = lambda: None
        self.started = int(time.time())
        self._next_index = 0
        self._tokenize = ThreadPoolExecutor(1, thread_name_prefix="rmscore-tokenize")
        self.parsing = ThreadPoolExecutor(1, thread_name_prefix="rmscore-parse")  # large request bodies
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.metrics.queue_depth.set_function(lambda: self.batcher.queued_rows if self.batcher else 0)
        self.metrics.pending.set_function(lambda: self.batcher.pending if self.batcher else 0)

    # --- life cycle -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.load_error is not None:
            return "failed"
        if self.draining:
            return "draining"
        return "ready" if self.batcher is not None else "loading"

    async def start(self) -> None:
        """Load in the background: the port answers at once (/health 503 until the model is in)."""
        asyncio.get_running_loop().run_in_executor(None, self._load)

    def _load(self) -> None:
        from rmscore.score.engine import Engine

        try:
            summary = ServeSummary("<serve>", on_batch=self.metrics.batch)
            engine = Engine.load(self.model_cfg, self.batch_cfg, summary, log=self.log)
            batcher = Batcher(self._score, lambda: engine.scorer.budget, self.cfg.max_wait_ms / 1000,
                              self.cfg.max_queue, on_drop=self.metrics.dropped.inc, on_error=self._batch_error)
            batcher.start()
            self.cutter = lengths.Cutter(engine.model.tokenizer, engine.max_length, self.batch_cfg.on_overflow)
            self.engine, self.batcher = engine, batcher
        except BaseException as exc:  # reported by the CLI after the server stops
            self.load_error = exc
            self.on_fatal()
            return
        self.on_ready()

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        self._tokenize.shutdown(wait=False, cancel_futures=True)
        self.parsing.shutdown(wait=False, cancel_futures=True)

    def cut_short(self) -> int:
        """End every request not yet answered (guard.py answers each 503); how many there were."""
        unfinished = [task for task in self.requests if not task.done()]
        for task in unfinished:
            task.cancel()
        return len(unfinished)

    def idle(self) -> bool:
        return self.in_flight == 0 and (self.batcher is None or (self.batcher.pending == 0 and not self.batcher.busy))

    def _batch_error(self, exc: BaseException) -> None:
        self.metrics.errors.inc()
        self.log(f"a batch raised {type(exc).__name__}: {exc}; its rows are retried one by one")

    # --- requests ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.model_cfg.path

    def check_model(self, name: str | None) -> None:
        if name is not None and name not in (self.model_id, Path(self.model_id.rstrip("/")).name):
            raise UnknownModel(f"the model `{name}` does not exist here; this server serves `{self.model_id}`")

    def ready_engine(self):
        """The engine, once loaded. A drain refuses new requests at the door (guard.py); a request
        that came in before it is still served."""
        if self.batcher is None:
            raise NotReady(self.state)
        return self.engine

    async def score_rows(self, rows: list, invalid: dict[int, str] | None = None) -> list[dict]:
        """Rows of any shape `rmscore score` reads -> result rows, in its output order. `invalid`:
        rows (by position) the caller already knows cannot be scored, and why."""
        engine = self.ready_engine()
        self._check_count(len(rows))
        base = self._reserve(len(rows))
        samples = await self._off_loop(self._samples, engine, rows, base)
        for sample in samples if invalid else ():
            sample.error = invalid.get(sample.input_index - base, sample.error)
        return await self._score_samples(samples, lambda a, b: self._prepare(base, samples[a:b]), base)

    async def score_texts(self, texts: list[str], prompts: list[str] | None = None) -> list[dict]:
        """Conversations already rendered as text (one result each), read where the family reads."""
        from rmscore.score.engine import rendered_samples

        self.ready_engine()
        self._check_count(len(texts))
        base = self._reserve(len(texts))
        samples = await self._off_loop(rendered_samples, len(texts), prompts, base)
        return await self._score_samples(samples, lambda a, b: self._prepare(base, samples[a:b], texts[a:b]), base)

    async def score_split(self, queries: list[str], prompts: list[str] | None) -> list[dict]:
        """--query-format split: each query cut after its prompt (protocols.split_queries), then scored."""
        engine = self.ready_engine()
        self._check_count(len(queries))
        rows, invalid = await self._off_loop(protocols.split_queries, queries, prompts, engine.model.tokenizer)
        return await self.score_rows(rows, invalid)

    def _off_loop(self, fn, *args):
        """Work that grows with a request runs on the tokenizing thread, never on the event loop."""
        return asyncio.get_running_loop().run_in_executor(self._tokenize, fn, *args)

    def _check_count(self, count: int) -> None:
        if count > self.cfg.row_limit:
            raise TooLarge(f"{count} rows to score in one request; the limit is {self.cfg.row_limit} "
                           "(--max-rows-per-request, --max-queue): split the request")

    def _samples(self, engine, rows: list, base: int) -> list:
        """The rows' samples, counted as they are made: a row of a million completions stops at the limit."""
        samples = []
        for i, row in enumerate(rows):
            samples += engine.samples([row], base + i)
            self._check_count(len(samples))
        return samples

    def _prepare(self, base: int, samples: list, texts: list[str] | None = None):
        """The Scorer's prepare (encode, length policy), texts too long to ever fit cut first
        (lengths.py). With --on-overflow error, an over-long row is named by its place in the request."""
        engine = self.engine
        if texts is None:
            prepare_fn = lambda ss, ts: engine.scorer.prepare(ss)  # noqa: E731
        else:
            prepare_fn = engine.prepare_rendered
        try:
            return lengths.prepare(prepare_fn, self.cutter, samples, texts)
        except InputError as exc:  # rows are numbered server-wide (see _reserve); the caller counts from 0
            message = re.sub(r"input row (\d+)", lambda m: f"row {int(m[1]) - base} of the request", exc.message)
            raise InputError(message, exc.hint) from None

    def _reserve(self, count: int) -> int:
        base, self._next_index = self._next_index, self._next_index + count
        return base

    async def _score_samples(self, samples: list, prepare, base: int) -> list[dict]:
        self._check_count(len(samples))
        if not samples:
            return []
        loop = asyncio.get_running_loop()
        ticket = self.batcher.admit(len(samples), loop)
        try:
            await asyncio.wait_for(asyncio.shield(ticket.admitted), ADMIT_WAIT_S)
            for start in range(0, len(samples), CHUNK):
                prepared = await loop.run_in_executor(self._tokenize, prepare, start, start + CHUNK)
                self.batcher.submit(ticket, items_of(ticket, prepared, start))
            rows = await ticket.future
        except asyncio.TimeoutError:  # still not admitted: the device is far behind
            self.batcher.cancel(ticket)
            raise Overloaded(self.batcher.retry_after()) from None
        except BaseException:  # the client went away, or tokenizing failed: drop what waits
            self.batcher.cancel(ticket)
            raise
        for row in rows:
            self.metrics.rows.labels(row["status"]).inc()
        return [self.engine.result(row, base) for row in rows]

    def _score(self, items: list[Item]) -> list[dict]:
        """The device thread's one call: the rows of a take, from any requests, through the Scorer."""
        from rmscore.score.scorer import Prepared

        self.metrics.take_requests.observe(len({id(item.ticket) for item in items}))
        prepared = Prepared([item.sample for item in items],
                            [(item.sample, item.enc) for item in items if item.problem is None],
                            [(item.sample, item.enc, item.problem) for item in items if item.problem is not None])
        return self.engine.scorer.run(prepared)


def items_of(ticket: Ticket, prepared, offset: int) -> list[Item]:
    slot = {id(sample): offset + k for k, sample in enumerate(prepared.samples)}
    items = [Item(ticket, slot[id(s)], s, enc, None, len(enc)) for s, enc in prepared.ready]
    return items + [Item(ticket, slot[id(s)], s, enc, problem, 0) for s, enc, problem in prepared.problems]


__all__ = ["Service", "NotReady", "TooLarge", "UnknownModel", "Overloaded"]
