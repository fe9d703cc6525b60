"""Readers for the text formats beyond JSON lines: a JSON array (.json) and CSV/TSV, each also .gz.

Each is as robust as JSON lines: one bad element or row is one problem row, and the rest are read.
- A JSON array is split into its elements by structure alone (brackets, strings, commas), and each
  element is decoded on its own, so a byte that is not UTF-8 or a broken value inside element 20
  spoils element 20 only. Only a break in the array's own structure (a missing comma between
  elements, an array never closed) stops the reading, as a cut file does. Memory: one element.
- CSV is read by Python's csv module in strict mode: a quoted field still open at the end of the
  file, or longer than MAX_FIELD characters (a quote never closed swallowing the file), stops the
  reading at the line where that field began; it never merges rows silently.
- TSV has no quoting convention (IANA text/tab-separated-values): a row is one line, split on tabs,
  and a quote is a character like any other.
Cells are decoded per cell, so a byte that is not UTF-8 spoils one row; a row with the wrong number
of fields, or the header line repeated (files joined together), is a problem row. Every cell is text
and an empty cell is null; rmscore/read/layout.py decodes the cells of list columns as JSON.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from rmscore.read.rawfile import broke_off, open_bytes, read_error
from rmscore.read.rows import JSON_KINDS, RawRow, Source

MAX_FIELD = 1 << 26  # characters in one CSV field: a longer one is a quote never closed
CHUNK = 1 << 16
_OUTSIDE = re.compile(rb'[\[\]{}",]')  # the bytes that matter outside a string
_INSIDE = re.compile(rb'["\\]')  # the bytes that matter inside one
_SPACE = b" \t\r\n"


class JsonArraySource(Source):
    """A file holding one JSON array of row objects (what SimPO's generation scripts write)."""

    shape = "a JSON array of objects"

    def __init__(self, path: Path):
        self.path, self.description, self.breaks = path, f"{path} (JSON array)", []
        self.columns = self._peek_columns()

    def rows(self) -> Iterator[RawRow]:
        self.breaks = []
        try:
            handle = open_bytes(self.path, lines=False)
        except OSError as exc:
            self.breaks.append(broke_off(self.path, "array item", 0, exc))
            return
        count = 0
        with handle:
            try:
                for raw in array_items(handle):
                    yield _element(count, raw)
                    count += 1
            except _Broken as exc:
                self.breaks.append(broke_off(self.path, "array item", count, read_error(handle) or exc))


class _Broken(Exception):
    pass


def array_items(handle) -> Iterator[bytes]:
    """The bytes of each element of the top-level JSON array in `handle`, one at a time. Raises
    _Broken where the array's own structure breaks (its elements are decoded by the caller)."""
    buf, pos = _skip_space(handle, handle.read(CHUNK).removeprefix(b"\xef\xbb\xbf"), 0)
    if buf[pos:pos + 1] != b"[":
        raise _Broken("not a JSON array")
    buf, pos = _skip_space(handle, buf, pos + 1)
    if buf[pos:pos + 1] == b"]":
        return
    while True:
        end, buf, pos = _element_end(handle, buf, pos)
        yield buf[pos:end]
        buf, pos = _skip_space(handle, buf[end:], 0)
        sep = buf[pos:pos + 1]
        if sep == b"]":
            return
        if sep != b",":
            raise _Broken(f"expected ',' or ']' after an item, found {sep.decode('latin-1') or 'the end of the file'}")
        buf, pos = _skip_space(handle, buf, pos + 1)


def _element_end(handle, buf: bytes, start: int) -> tuple[int, bytes, int]:
    """Where the element starting at buf[start] ends (exclusive), reading more of the file as needed."""
    buf, start = buf[start:], 0
    depth, at = 0, 0
    while True:
        match = _OUTSIDE.search(buf, at)
        if match is None:
            more = handle.read(CHUNK)
            if not more:
                raise _Broken("the array is not closed")
            at, buf = len(buf), buf + more
            continue
        char, at = match.group(), match.end()
        if char == b'"':
            at, buf = _string_end(handle, buf, at)
        elif char in b"[{":
            depth += 1
        elif depth == 0:  # the array's own ',' or ']'
            return match.start(), buf, start
        elif char in b"]}":
            depth -= 1
            if depth == 0:
                return at, buf, start


def _string_end(handle, buf: bytes, at: int) -> tuple[int, bytes]:
    while True:
        match = _INSIDE.search(buf, at)
        if match is None or (match.group() == b"\\" and match.end() == len(buf)):
            more = handle.read(CHUNK)
            if not more:
                raise _Broken("a string is not closed")
            buf += more
            continue
        if match.group() == b'"':
            return match.end(), buf
        at = match.end() + 1  # the escaped byte


def _skip_space(handle, buf: bytes, pos: int) -> tuple[bytes, int]:
    while True:
        rest = buf[pos:].lstrip(_SPACE)
        if rest:
            return rest, 0
        buf, pos = handle.read(CHUNK), 0
        if not buf:
            return b"", 0


def _element(index: int, raw: bytes) -> RawRow:
    where = f"array item {index + 1:,}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRow(index, None, f"not valid UTF-8 ({where}: byte 0x{raw[exc.start]:02x} at position {exc.start + 1})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRow(index, None, f"not valid JSON ({where}: {exc.msg} at character {exc.pos + 1})")
    if not isinstance(data, dict):
        return RawRow(index, None, f"not a JSON object but {JSON_KINDS.get(type(data), 'JSON')} ({where})")
    return RawRow(index, data)


class DelimitedSource(Source):
    """CSV or TSV with a header line."""

    shape = "a header line naming the columns, then one row per record"
    text_cells = True

    def __init__(self, path: Path, delimiter: str):
        self.path, self.delimiter, self.breaks = path, delimiter, []
        self.description = f"{path} ({'TSV' if delimiter == chr(9) else 'CSV'})"
        self.columns = self._peek_columns()
        self.searched = ""  # the header names every column

    def rows(self) -> Iterator[RawRow]:
        self.breaks = []
        try:
            handle = open_bytes(self.path)
        except OSError as exc:
            self.breaks.append(broke_off(self.path, "row", 0, exc))
            return
        with handle:
            # Undecodable bytes stay as surrogates until their cell is read: one bad byte, one bad row.
            text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
            records = _tsv_records(text) if self.delimiter == "\t" else _csv_records(text)
            count = 0
            try:
                _, header = next(records, (0, None))
                if not isinstance(header, list):  # no line at all, or a header that is not CSV
                    return
                for line, cells in records:
                    yield _row(count, line, cells, header)
                    count += 1
            except _Broken as exc:
                self.breaks.append(broke_off(self.path, "row", count, read_error(handle) or exc))
                return
            if read_error(handle):
                self.breaks.append(broke_off(self.path, "row", count, read_error(handle)))


def _tsv_records(text) -> Iterator[tuple[int, list[str]]]:
    for line, record in enumerate(text, 1):
        record = record.removesuffix("\n").removesuffix("\r")
        if record:
            yield line, record.split("\t")


def _csv_records(text) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its fields). A quoted field that the file ends inside, or that
    grows past MAX_FIELD, raises _Broken naming the line it began on."""
    # The limit is process-wide; every reader sets the same one, and nothing else in rmscore reads CSV.
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(text, strict=True)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num > line or "end of data" in str(exc) or "field limit" in str(exc):
                raise _Broken(f"the quoted field that begins on line {line:,} is never closed ({exc})") from None
            yield line, exc  # a stray quote inside one line: that row alone, the next starts afresh
            continue
        if cells:
            yield line, cells


def _row(index: int, line: int, cells, header: list[str]) -> RawRow:
    where = f"row {index + 1:,}, line {line:,}"
    if isinstance(cells, csv.Error):
        return RawRow(index, None, f"malformed quoting ({where}: {cells})")
    if len(cells) != len(header):
        return RawRow(index, None, f"wrong number of fields ({where}: {len(cells)}, the header has {len(header)})")
    if cells == header:
        return RawRow(index, None, f"the header line again ({where}): files joined together? remove the repeat")
    data = {}
    for name, cell in zip(header, cells):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(cell[exc.start]) - 0xDC00
            return RawRow(index, None, f"not valid UTF-8 ({where}, column {name!r}: byte 0x{byte:02x} at "
                                       f"position {exc.start + 1})")
        data[name] = cell or None
    return RawRow(index, data)
