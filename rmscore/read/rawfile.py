"""The bytes of an input file: decompressed when it is a .gz, and ending quietly where they break off.

A .gz cut short (a copy interrupted, a quota hit while writing it) or a read error part-way must
not cost the rows before it: the readers get every complete line up to the break, then a clean
end, and read_error() says why the data stopped. The caller names the damage in one line.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path


def broke_off(path: Path, unit: str, count: int, exc: BaseException) -> str:
    """One line: the file, how far it was read, and why it stopped there."""
    reason = (str(exc).splitlines() or [""])[0].strip() or type(exc).__name__
    if count == 0:
        return f"{path} cannot be read: {reason}"
    return f"{path} breaks off after {unit} {count:,}: {reason}"


class _Guarded(io.RawIOBase):
    """A byte stream that ends where its data breaks off (a .gz cut short, a read error) instead of
    raising; `error` keeps why. With `lines`, bytes after the last newline before a break are
    dropped: that line was cut, and half a line must not pass for a whole row."""

    def __init__(self, raw, lines: bool):
        self.raw, self.lines, self.error = raw, lines, None
        self._ready, self._at, self._tail, self._ended = b"", 0, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at == len(self._ready) and not self._ended:
            self._fill(len(buffer))
        n = min(len(buffer), len(self._ready) - self._at)
        buffer[:n] = self._ready[self._at:self._at + n]
        self._at += n
        return n

    def _fill(self, size: int) -> None:
        try:
            chunk = self.raw.read1(size)  # read() would drop what it decoded before a break
        except (OSError, EOFError, zlib.error) as exc:
            self.error, self._ended = exc, True
            return
        if not chunk:  # a clean end: the last line needs no newline
            self._ready, self._at, self._tail, self._ended = self._tail, 0, b"", True
        elif self.lines:
            whole, newline, self._tail = (self._tail + chunk).rpartition(b"\n")
            self._ready, self._at = whole + newline, 0
        else:
            self._ready, self._at = chunk, 0

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
        super().close()


def open_bytes(path: Path, lines: bool = True) -> io.BufferedReader:
    """A binary handle, decompressing .gz, that ends quietly where the data breaks off (see
    read_error). Text is decoded row by row, so one bad byte is one bad row."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.BufferedReader(_Guarded(raw, lines), buffer_size=1 << 16)


def read_error(handle: io.BufferedReader) -> BaseException | None:
    """Why the data of an open_bytes() handle broke off, or None if it was read to its end."""
    return handle.raw.error
