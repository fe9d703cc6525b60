"""Parquet part files: written under a temporary name, renamed only when complete.

A reader (or a resumed run) therefore never sees a half-written file: every `part-*.parquet` in
the folder is whole. What goes into the rows is the caller's business. A write that fails (a full
disk) discards the part being written and raises OutputError; the finished parts stand.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.errors import OutputError

PART_GLOB = "part-*.parquet"


class PartWriter:
    """Appends row batches to `part-{stem}-{seq:05d}.parquet`, starting a new part every
    `rows_per_part` rows. Memory holds one batch at a time, never a whole part."""

    def __init__(self, directory: Path, schema: pa.Schema, stem: str, rows_per_part: int, first_seq: int = 0,
                 on_finish=None, check=None):
        self.directory, self.schema, self.stem = Path(directory), schema, stem
        self.rows_per_part = rows_per_part
        self.seq = first_seq
        self.on_finish = on_finish  # called with each part's final path, right after the rename
        self.check = check  # called right before each rename; raises if this process may no longer write
        self.finished: list[Path] = []
        self.broken = False  # a write failed: nothing more is written
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                self._io(self._open)
            room = self.rows_per_part - self._rows_in_part
            head, table = table.slice(0, room), table.slice(room)
            self._io(self._writer.write_table, head)
            self._rows_in_part += head.num_rows
            if self._rows_in_part >= self.rows_per_part:
                self.finish_part()

    def write_whole(self, table: pa.Table) -> None:
        """`table` as part(s) of its own, with its own schema and metadata, finished at once."""
        self.finish_part()
        schema, self.schema = self.schema, table.schema
        try:
            self.write(table)
            self.finish_part()
        finally:
            self.schema = schema

    def finish_part(self) -> Path | None:
        """Close the part being written and give it its final name. Returns that name."""
        if self._writer is None:
            return None
        self._io(self._writer.close)
        if self.check is not None:
            self._io(self.check)
        final = self._final_path()
        self._io(os.replace, self._tmp_path(), final)  # atomic on POSIX: readers see all or nothing
        self._writer, self._rows_in_part = None, 0
        self.seq += 1
        self.finished.append(final)
        if self.on_finish is not None:
            self.on_finish(final)
        return final

    def close(self) -> None:
        self.finish_part()

    def _io(self, step, *args):
        """Run one step of writing; if it fails, discard the part being written and write no more."""
        if self.broken:
            raise OutputError(f"an earlier write to {self.directory} failed; nothing more is written")
        try:
            return step(*args)
        except BaseException as exc:
            self.broken = True
            self._discard()
            if isinstance(exc, OSError):
                raise output_error(self.directory, exc) from exc
            raise

    def _discard(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            pass  # the file goes anyway
        self._writer = None
        self._tmp_path().unlink(missing_ok=True)

    @property
    def part_age(self) -> float:
        """Seconds since the part being written was opened (0 when none is)."""
        return time.monotonic() - self._opened if self._writer is not None else 0.0

    def _open(self) -> None:
        self._opened = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp_path(), self.schema, compression="zstd")

    def _final_path(self) -> Path:
        return self.directory / f"part-{self.stem}-{self.seq:05d}.parquet"

    def _tmp_path(self) -> Path:
        # Starts with "." so pyarrow.dataset and glob("part-*") both ignore it.
        return self.directory / f".tmp-part-{self.stem}-{self.seq:05d}.parquet"


def output_error(directory: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left to write a part in {directory} ({exc.strerror})",
                           "free space (or raise the quota), then rerun the same command: the finished parts are "
                           "intact and it resumes after them")
    return OutputError(f"cannot write a part in {directory}: {exc.strerror or exc}",
                       "fix the output folder, then rerun the same command: the finished parts are intact")


def existing_parts(directory: Path, stem: str = "*") -> list[Path]:
    """Finished parts, of one shard (`stem`) or all."""
    return sorted(Path(directory).glob(f"part-{stem}-*.parquet")) if Path(directory).is_dir() else []


def part_seq(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1].split(".")[0])
