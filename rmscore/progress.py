"""Progress for humans on a terminal (a tqdm bar), periodic log lines everywhere else (SLURM logs)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int | None, enabled: bool | None = None, every_s: float = 30.0, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()
        self.rows = self.tokens = 0
        self.every_s, self._last_log = every_s, self.start
        use_bar = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if use_bar and not quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="row", dynamic_ncols=True, smoothing=0.1)

    def update(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(rows)
            self.bar.set_postfix_str(f"{self.tokens / elapsed:,.0f} tok/s", refresh=False)
        elif not self.quiet and time.perf_counter() - self._last_log >= self.every_s:
            self._last_log = time.perf_counter()
            print(
                f"[rmscore] {self.rows:,} rows, {self.tokens:,} tokens, "
                f"{self.rows / elapsed:,.1f} rows/s, {self.tokens / elapsed:,.0f} tok/s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
