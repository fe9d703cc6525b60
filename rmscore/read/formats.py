"""Readers for the text formats beyond JSON lines: a JSON array (.json) and CSV/TSV, each also .gz.

Both stream in bounded memory through well-kept parsers: ijson for the array (one element at a
time, never the whole document), pyarrow's streaming CSV reader for CSV/TSV (one block at a time).
CSV cells are read as bytes and decoded per cell, so a byte that is not UTF-8 spoils one row, not
the file; a row with the wrong number of fields is a problem row too. Every cell is text (an empty
cell is null): a messages or list column is given as a JSON string, which the layout decodes
(rmscore/read/layout.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

from rmscore.read.rawfile import broke_off, open_bytes, read_error
from rmscore.read.rows import JSON_KINDS, RawRow, Source

CSV_BLOCK = 1 << 18  # bytes pyarrow parses at a time; it reads ~32 ahead: ~9 MB, whatever the file size
MAX_CSV_BLOCK = 1 << 30  # a row must fit in one block: blocks grow (x4) up to this for rows that long


class JsonArraySource(Source):
    """A file holding one JSON array of row objects (what SimPO's generation scripts write)."""

    shape = "a JSON array of objects"

    def __init__(self, path: Path):
        self.path, self.description, self.breaks = path, f"{path} (JSON array)", []
        self.columns = self._peek_columns()

    def rows(self) -> Iterator[RawRow]:
        import ijson

        index, self.breaks = 0, []
        try:
            handle = open_bytes(self.path, lines=False)
        except OSError as exc:
            self.breaks.append(broke_off(self.path, "array item", 0, exc))
            return
        with handle:
            try:
                for item in ijson.items(handle, "item", use_float=True):
                    if isinstance(item, dict):
                        yield RawRow(index, item)
                    else:
                        kind = JSON_KINDS.get(type(item), "JSON")
                        yield RawRow(index, None, f"not a JSON object but {kind} (array item {index + 1:,})")
                    index += 1
            except ijson.JSONError as exc:
                # A JSON document cannot be resynchronised after a syntax error or a bad byte.
                self.breaks.append(broke_off(self.path, "array item", index, read_error(handle) or exc))


class DelimitedSource(Source):
    """CSV or TSV with a header line."""

    shape = "a header line naming the columns, then one row per record"

    def __init__(self, path: Path, delimiter: str):
        self.path, self.delimiter, self.breaks = path, delimiter, []
        self.description = f"{path} ({'TSV' if delimiter == chr(9) else 'CSV'})"
        self.columns = self._peek_columns()

    def rows(self) -> Iterator[RawRow]:
        self.breaks, block, done = [], CSV_BLOCK, 0
        while True:
            try:
                for position, row in enumerate(self._rows(block)):
                    if position >= done:  # after a restart, the rows already given are skipped
                        yield row
                        done += 1
                return
            except _RowTooLong:
                block *= 4  # pyarrow needs a whole row in one block: read again with larger blocks

    def _rows(self, block: int) -> Iterator[RawRow]:
        import pyarrow as pa

        index, invalid = 0, []
        row = 0  # data rows so far; pyarrow numbers rows from the header as 1 (a quoted newline does not count)
        try:
            for batch in self._batches(invalid, block):
                for cells in batch.to_pylist():
                    while invalid and (invalid[0].number or 0) <= row + 2:
                        yield _wrong_width(index, invalid.pop(0))
                        index, row = index + 1, row + 1
                    row += 1
                    yield _decoded(index, row, cells)
                    index += 1
        except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
            if "straddl" in str(exc) and block < MAX_CSV_BLOCK:
                raise _RowTooLong from exc
            self.breaks.append(broke_off(self.path, "row", row, exc))
        for bad in invalid:
            yield _wrong_width(index, bad)
            index += 1

    def _batches(self, invalid: list, block: int) -> Iterator:
        import pyarrow as pa
        import pyarrow.csv as csv

        def parse(bad: list) -> csv.ParseOptions:
            return csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                    invalid_row_handler=lambda row: bad.append(row) or "skip")

        read = csv.ReadOptions(block_size=block, use_threads=False)
        with open_bytes(self.path) as handle:  # the header, so that every column can be read as bytes
            names = csv.open_csv(handle, read_options=read, parse_options=parse([])).schema.names
        # Bytes: no type guessed from the first block can fail on a later one, no bad byte fails a block.
        convert = csv.ConvertOptions(column_types={name: pa.binary() for name in names}, null_values=[""],
                                     strings_can_be_null=True, quoted_strings_can_be_null=False)
        with open_bytes(self.path) as handle:
            yield from csv.open_csv(handle, read_options=read, parse_options=parse(invalid), convert_options=convert)
            if read_error(handle):
                raise read_error(handle)


class _RowTooLong(Exception):
    pass


def _wrong_width(index: int, row) -> RawRow:
    where = f"row {row.number - 1:,}: " if row.number else ""
    return RawRow(index, None, f"wrong number of fields ({where}{row.actual_columns}, the header has "
                               f"{row.expected_columns})")


def _decoded(index: int, row: int, cells: dict) -> RawRow:
    data = {}
    for name, raw in cells.items():
        try:
            data[name] = None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return RawRow(index, None, f"not valid UTF-8 (row {row:,}, column {name!r}: byte 0x{raw[exc.start]:02x} "
                                       f"at position {exc.start + 1})")
    return RawRow(index, data)
