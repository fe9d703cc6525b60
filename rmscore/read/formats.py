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
and an empty cell is null; rmscore/read/contract.py decodes the cells of list columns as JSON.
"""

from __future__ import annotations

import codecs
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
# A whole string (its closing quote in group "end", or none yet: the bytes read end inside it), or a
# bracket or comma; whatever else lies between (numbers, true, spaces) is skipped by the search.
_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:(?P<end>")|\\?\Z)|[\[\]{},]', re.S)
_NOT_SPACE = re.compile(r"[^ \t\r\n]")
_SURROGATE = re.compile("[\udc80-\udcff]")  # a byte that was not UTF-8 (surrogateescape)


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
                for text, value in array_items(handle):
                    yield _element(count, text, value)
                    count += 1
            except _Broken as exc:
                self.breaks.append(broke_off(self.path, "array item", count, read_error(handle) or exc))


class _Broken(Exception):
    pass


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: a byte that was not UTF-8
        return False
    return True


def array_items(handle) -> Iterator[tuple[str, object]]:
    """(text, decoded value or _BAD) of each element of the top-level JSON array in `handle`, one at
    a time. Raises _Broken where the array's own structure breaks."""
    scan = _Scanner(handle)
    if scan.next_char() != "[":
        raise _Broken("not a JSON array")
    if scan.next_char(peek=True) == "]":
        return
    while True:
        yield scan.element()
        sep = scan.next_char()
        if sep == "]":
            return
        if sep != ",":
            raise _Broken(f"expected ',' or ']' after an item, found {sep or 'the end of the file'}")


_BAD = object()  # an element that is not valid JSON
_DECODER = json.JSONDecoder()


class _Scanner:
    """A window on the file's text. Bytes that are not UTF-8 become surrogates (one bad byte spoils
    one element, found by _element); each element is decoded in C by raw_decode, and only one that
    does not decode is measured by the structural scan (_TOKEN) to find where the next one begins."""

    def __init__(self, handle):
        self.handle, self.text, self.pos, self.ended, self.clean = handle, "", 0, False, True
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._more(0)
        self.text = self.text.removeprefix("\ufeff")

    def _more(self, keep: int) -> bool:
        """Read on, dropping the text before `keep` (positions move back by `keep`); False at the end.
        `clean`: the text holds no byte that was not UTF-8 (checked in C, per chunk)."""
        if self.ended:
            return False
        chunk = self.handle.read(max(CHUNK, len(self.text) - keep))  # a long element doubles the reads
        self.ended = not chunk
        piece, kept = self.decoder.decode(chunk, final=self.ended), self.text[keep:]
        self.clean = (self.clean or not _SURROGATE.search(kept)) and _is_utf8(piece)
        self.text, self.pos = kept + piece, self.pos - keep
        return not self.ended

    def next_char(self, peek: bool = False) -> str:
        """The next character that is not whitespace ("" at the end of the file)."""
        if self.pos < len(self.text) and self.text[self.pos] not in " \t\r\n":
            self.pos += not peek
            return self.text[self.pos - (not peek)]
        while True:
            match = _NOT_SPACE.search(self.text, self.pos)
            if match:
                self.pos = match.start() + (not peek)
                return match.group()
            self.pos = len(self.text)
            if not self._more(self.pos):
                return ""

    def element(self) -> tuple[str, object]:
        self.next_char(peek=True)  # raw_decode takes no leading whitespace
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                value, end = _BAD, self._end()
            else:
                if end == len(self.text) and not self.ended:
                    end = None  # a number cut by the window: read on
            if end is not None:
                start, self.pos = self.pos, end
                text = self.text[start:end]
                bad = None if self.clean else _SURROGATE.search(text)
                return text, (bad if bad else value)
            if not self._more(self.pos):
                raise _Broken("the array is not closed")

    def _end(self) -> int | None:
        """Where the element at self.pos ends, by its brackets, strings and commas alone (None: past
        the text read so far)."""
        depth = 0
        for token in _TOKEN.finditer(self.text, self.pos):
            char = token.group()[0]
            if char == '"':
                if token.group("end") is None:
                    return None
            elif char in "[{":
                depth += 1
            elif depth == 0:  # the array's own ',' or ']'
                return token.start()
            elif char != ",":
                depth -= 1
                if depth == 0:
                    return token.end()
        return None


def _element(index: int, text: str, value) -> RawRow:
    """The row of one element; `value` is its decoded value, _BAD, or where a byte was not UTF-8."""
    where = f"array item {index + 1:,}"
    if isinstance(value, re.Match):
        bad = value
        return RawRow(index, None, f"not valid UTF-8 ({where}: byte 0x{ord(bad.group()) - 0xDC00:02x} at position "
                                   f"{bad.start() + 1})")
    if value is _BAD:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return RawRow(index, None, f"not valid JSON ({where}: {exc.msg} at character {exc.pos + 1})")
    if not isinstance(value, dict):
        return RawRow(index, None, f"not a JSON object but {JSON_KINDS.get(type(value), 'JSON')} ({where})")
    return RawRow(index, value)


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
