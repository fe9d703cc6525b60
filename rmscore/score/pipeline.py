"""Run a producer one step ahead on a background thread, so CPU work overlaps the forward.

Reading, rendering and tokenizing the next window (the fast tokenizer releases the GIL) and
collating the next batch into pinned memory happen while the device works on the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()
JOIN_TIMEOUT_S = 120.0


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield `items` in order, computing up to `depth` of them ahead on a daemon thread.
    An exception in the producer is re-raised here, at the item where it happened.

    However the consumer stops (done, an exception, a signal), the producer is stopped and joined
    before this generator finishes: a thread still tokenizing or collating while the interpreter
    exits can abort the process (a native call that returns during finalization is killed).
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, never lost
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name="rmscore-prefetch", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT_S)  # it finishes the item in hand; bounded in case that read hangs
