"""Stopping cleanly when SLURM (or anyone) asks: SIGTERM and SIGUSR1.

SLURM sends SIGTERM on preemption and scancel, and SIGUSR1 ahead of the time limit when the job
asks for it (`#SBATCH --signal=B:USR1@120`). The handler only sets a flag; the scoring loop looks
at it between batches, saves every finished row (whole windows, and the batches of the window in
flight that came back) and exits with REQUEUE_EXIT so the batch script knows to requeue. Ctrl-C
(SIGINT) keeps its usual meaning, stop now, and saves the same way (rmscore/score/run.py).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator

from rmscore.errors import Interrupted

REQUEUE_EXIT = Interrupted.exit_code  # EX_TEMPFAIL from sysexits.h: "try again later"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class GracefulStop:
    """Context manager: while inside, SIGTERM/SIGUSR1 set `received` instead of killing."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "GracefulStop":
        # Python lets only the main thread install handlers; elsewhere signals keep their default.
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        # A second signal changes nothing: SLURM signals every process of the job, and the batch
        # script forwards its own, so one stop request often arrives twice.
        self.received = self.received or signal.Signals(signum).name

    def check(self) -> None:
        if self.received:
            raise Interrupted(self.received)

    def watch(self, items: Iterable) -> Iterator:
        """Yield from `items`, stopping at the first item after a signal."""
        for item in items:
            self.check()
            yield item
