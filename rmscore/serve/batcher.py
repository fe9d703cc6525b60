"""The dynamic batcher: every request's rows in one queue, one device thread taking what waits.

Requests are admitted by their number of rows, first come first in: one that does not fit under
max_queue waits in line, and no later request, however small, goes before it (a line already
holding max_queue rows refuses with Overloaded). Admitted rows are tokenized elsewhere and queued
in arrival order. The device thread waits for the first row, then at
most `max_wait_s` for more until a token budget's worth waits, takes up to TAKE_BUDGETS budgets of
rows from any number of requests and hands them to `score` (the engine's Scorer: length sort, token
budget, prompt reuse, dedupe, out-of-memory back-off). Each request resolves when its own rows are
back. No torch here: `score` is injected, so the queueing logic is tested without a model.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the batcher stays free of torch and model code
    from rmscore.errors import RowError
    from rmscore.score.records import Encoded, Sample

# Rows taken per device turn, in token budgets. The Scorer sorts them by length into budget-sized
# batches, so taking more than one budget keeps padding low inside a large request; taking only a
# few keeps a small request that arrives behind a large one from waiting long.
TAKE_BUDGETS = 4
ERROR = "error"  # status of a row whose scoring raised even when it was retried alone


class Overloaded(Exception):
    """The queue is full: answer 503 with Retry-After."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after}s")
        self.retry_after = retry_after


class Ticket:
    """One request's rows: resolves its future with the output rows, in its own order."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop):
        self.size = size
        self.admitted: asyncio.Future = loop.create_future()  # resolves once its rows fit under max_queue
        self.in_line = False
        self.rows: list = [None] * size
        self.left = size  # rows not yet back
        self.unsubmitted = size  # admitted rows not yet queued (still being tokenized)
        self.cancelled = False
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self.rows)

    def _admit(self) -> None:
        if not self.admitted.done():
            self.admitted.set_result(None)


@dataclass(eq=False)
class Item:
    """One prepared row: `enc` to score, or `problem` (a RowError) saying why it cannot be."""

    ticket: Ticket
    slot: int  # position in the request's output
    sample: Sample
    enc: Encoded | None = None
    problem: RowError | None = None
    tokens: int = 0
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, score: Callable[[list[Item]], list[dict]], budget: Callable[[], int], max_wait_s: float,
                 max_queue: int, on_drop: Callable[[int], None] = lambda n: None,
                 on_error: Callable[[BaseException], None] = lambda exc: None):
        self.score, self.budget, self.max_wait_s, self.max_queue = score, budget, max_wait_s, max_queue
        self.on_drop, self.on_error = on_drop, on_error
        self._cond = threading.Condition()
        self._queue: deque[Item] = deque()
        self._line: deque[Ticket] = deque()  # requests waiting to be admitted, in arrival order
        self.waiting = 0  # rows in that line
        self.queued_tokens = 0
        self.pending = 0  # rows admitted and not yet answered or dropped
        self.busy = False  # the device thread is scoring a take
        self._rate = 0.0  # tokens per second of recent takes, for Retry-After
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="rmscore-device", daemon=True)

    @property
    def queued_rows(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Score what is queued, then end the device thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def admit(self, size: int, loop: asyncio.AbstractEventLoop) -> Ticket:
        """A ticket whose `admitted` future resolves once its rows fit: at once if nobody waits and
        they fit now, else in its turn. Overloaded if the line already holds max_queue rows."""
        ticket = Ticket(size, loop)
        with self._cond:
            if not self._line and self.pending + size <= self.max_queue:
                self.pending += size
                ticket._admit()
            elif self.waiting + size <= self.max_queue:
                ticket.in_line = True
                self._line.append(ticket)
                self.waiting += size
            else:
                raise Overloaded(self.retry_after())
        return ticket

    def submit(self, ticket: Ticket, items: list[Item]) -> None:
        with self._cond:
            ticket.unsubmitted -= len(items)
            if ticket.cancelled:
                self._release(len(items))
                return
            self._queue.extend(items)
            self.queued_tokens += sum(item.tokens for item in items)
            self._cond.notify_all()

    def cancel(self, ticket: Ticket) -> None:
        """The client has gone: its rows still waiting are dropped before they are computed."""
        with self._cond:
            if ticket.cancelled:
                return
            ticket.cancelled = True
            if ticket.in_line:  # never admitted: it leaves the line, and those behind it move up
                self._line.remove(ticket)
                self.waiting -= ticket.size
                ticket.in_line, ticket.unsubmitted = False, 0
                self._admit_waiting()
                return
            mine = [item for item in self._queue if item.ticket is ticket]
            if mine:
                self._queue = deque(item for item in self._queue if item.ticket is not ticket)
                self.queued_tokens -= sum(item.tokens for item in mine)
            dropped = len(mine) + ticket.unsubmitted
            ticket.unsubmitted = 0
            self._release(dropped)
        if dropped:
            self.on_drop(dropped)

    def _release(self, rows: int) -> None:
        self.pending -= rows
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        """Under the lock: admit requests from the head of the line while they fit."""
        while self._line and self.pending + self._line[0].size <= self.max_queue:
            ticket = self._line.popleft()
            self.waiting -= ticket.size
            self.pending += ticket.size
            ticket.in_line = False
            try:
                ticket.loop.call_soon_threadsafe(ticket._admit)
            except RuntimeError:  # the event loop has closed
                pass

    def retry_after(self) -> int:
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(self.queued_tokens / self._rate))))

    def _take(self) -> list[Item] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            # Wait from the first row's arrival, not from now: rows that waited while the device
            # was busy go at once.
            deadline = self._queue[0].arrived + self.max_wait_s
            while self.queued_tokens < self.budget() and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            take, tokens, limit = [], 0, TAKE_BUDGETS * self.budget()
            while self._queue and (not take or tokens + self._queue[0].tokens <= limit):
                item = self._queue.popleft()
                take.append(item)
                tokens += item.tokens
            self.queued_tokens -= tokens
            self.busy = True
            return take

    def _loop(self) -> None:
        while (take := self._take()) is not None:
            try:
                self._run(take)
            finally:
                with self._cond:
                    self.busy = False

    def _run(self, take: list[Item]) -> None:
        live = [item for item in take if not item.ticket.cancelled]
        gone = len(take) - len(live)
        if gone:
            with self._cond:
                self._release(gone)
            self.on_drop(gone)
        if not live:
            return
        start = time.monotonic()
        rows = self._score_all(live)
        tokens = sum(item.tokens for item in live)
        if tokens:
            rate = tokens / max(time.monotonic() - start, 1e-6)
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        for item, row in zip(live, rows, strict=True):
            self._deliver(item, row)

    def _score_all(self, items: list[Item]) -> list[dict]:
        """Score the take; if that raises, score each row alone, so one bad row (or one broken
        batch) never spoils the others' results and never stops the device thread."""
        try:
            return self.score(items)
        except Exception as exc:
            self.on_error(exc)
        return [self._score_alone(item) for item in items]

    def _score_alone(self, item: Item) -> dict:
        try:
            return self.score([item])[0]
        except Exception as exc:
            self.on_error(exc)
            sample = item.sample
            return {"input_index": sample.input_index, "completion_index": sample.completion_index,
                    "prompt_id": sample.prompt_id, "side": sample.side, "num_tokens": item.tokens or None,
                    "status": ERROR, "status_detail": f"scoring failed: {type(exc).__name__}: {exc}"[:500]}

    def _deliver(self, item: Item, row: dict) -> None:
        ticket = item.ticket
        ticket.rows[item.slot] = row
        with self._cond:
            self._release(1)
            ticket.left -= 1
            finished = ticket.left == 0
        if finished and not ticket.cancelled:
            try:
                ticket.loop.call_soon_threadsafe(ticket._resolve)
            except RuntimeError:  # the event loop has closed: nobody is waiting any more
                pass
