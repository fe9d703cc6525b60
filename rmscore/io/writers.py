"""Parquet part files: written under a temporary name, renamed only when complete.

A reader (or a resumed run) therefore never sees a half-written file: every `part-*.parquet` in
the folder is whole. What goes into the rows is the caller's business.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PART_GLOB = "part-*.parquet"


class PartWriter:
    """Appends row batches to `part-{stem}-{seq:05d}.parquet`, starting a new part every
    `rows_per_part` rows. Memory holds one batch at a time, never a whole part."""

    def __init__(self, directory: Path, schema: pa.Schema, stem: str, rows_per_part: int, first_seq: int = 0,
                 on_finish=None):
        self.directory, self.schema, self.stem = Path(directory), schema, stem
        self.rows_per_part = rows_per_part
        self.seq = first_seq
        self.on_finish = on_finish  # called with each part's final path, right after the rename
        self.finished: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                self._open()
            room = self.rows_per_part - self._rows_in_part
            head, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(head)
            self._rows_in_part += head.num_rows
            if self._rows_in_part >= self.rows_per_part:
                self.finish_part()

    def finish_part(self) -> Path | None:
        """Close the part being written and give it its final name. Returns that name."""
        if self._writer is None:
            return None
        self._writer.close()
        final = self._final_path()
        os.replace(self._tmp_path(), final)  # atomic on POSIX: readers see all or nothing
        self._writer, self._rows_in_part = None, 0
        self.seq += 1
        self.finished.append(final)
        if self.on_finish is not None:
            self.on_finish(final)
        return final

    def close(self) -> None:
        self.finish_part()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp_path(), self.schema, compression="zstd")

    def _final_path(self) -> Path:
        return self.directory / f"part-{self.stem}-{self.seq:05d}.parquet"

    def _tmp_path(self) -> Path:
        # Starts with "." so pyarrow.dataset and glob("part-*") both ignore it.
        return self.directory / f".tmp-part-{self.stem}-{self.seq:05d}.parquet"


def existing_parts(directory: Path, stem: str = "*") -> list[Path]:
    """Finished parts, of one shard (`stem`) or all."""
    return sorted(Path(directory).glob(f"part-{stem}-*.parquet")) if Path(directory).is_dir() else []


def part_seq(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1].split(".")[0])
