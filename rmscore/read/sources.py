"""Streaming raw rows out of JSONL, JSON, CSV/TSV, Parquet, `save_to_disk` folders and Hub datasets.

Every source is opened and peeked before any model loads, so an unreadable input stops the run at
once. Rows are yielded one at a time with their position in the input; nothing is materialised.
A row that cannot be read (bytes that are not UTF-8, a line that is not JSON or not an object) is
yielded as a problem row (counted and written, never dropped). A file that breaks off part-way
(a .gz cut short, a read error) keeps every row before the break; `damage` names where it broke,
and the run reports it and exits non-zero once those rows are saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from rmscore.errors import InputError
from rmscore.read.formats import DelimitedSource, JsonArraySource
from rmscore.read.rawfile import broke_off, open_bytes, read_error
from rmscore.read.rows import JSON_KINDS, RawRow, Source

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
DELIMITED = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}
FORMATS = ".jsonl, .json (an array, or JSON lines), .csv, .tsv (each also .gz) or .parquet"
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def open_source(path: str, split: str = "train", config_name: str | None = None) -> Source:
    p = Path(path)
    if p.is_file():
        if p.name.endswith(".parquet"):
            return ParquetSource([p], str(p))
        if p.name.endswith((".json", ".json.gz")) and _first_byte(p) == b"[":
            return JsonArraySource(p)
        if p.name.endswith(JSONL_SUFFIXES):
            return JsonlSource([p], str(p))
        if p.name.endswith(tuple(DELIMITED)):
            return DelimitedSource(p, DELIMITED[next(s for s in DELIMITED if p.name.endswith(s))])
        raise InputError(f"cannot tell the format of {path}",
                         f"give a {FORMATS} file, a Parquet folder, or a save_to_disk folder")
    if p.is_dir():
        if any((p / marker).exists() for marker in DISK_MARKERS):
            return DiskSource(p, split)
        parquet = sorted(f for f in p.rglob("*.parquet") if not _hidden(f, p))
        if parquet:
            return ParquetSource(parquet, f"{path} ({len(parquet)} Parquet files)")
        jsonl = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(JSONL_SUFFIXES) and not _hidden(f, p))
        if jsonl:
            arrays = [f for f in jsonl if f.name.endswith((".json", ".json.gz")) and _first_byte(f) == b"["]
            if arrays:
                raise InputError(f"{arrays[0]} is a JSON array: a folder is read as JSON lines files",
                                 "give a JSON array file by itself")
            return JsonlSource(jsonl, f"{path} ({len(jsonl)} JSONL files)")
        raise InputError(f"{path} holds no .parquet or .jsonl files and is not a save_to_disk folder")
    if _looks_like_hub_name(path) and not _looks_like_file(path):
        return HubSource(path, split, config_name)
    # A typo or the wrong folder must not read as a failed Hub download: say where we looked.
    raise InputError(f"input not found: {path} (no file or folder at {p.absolute()})",
                     "check the name and the folder you run from; a Hub dataset is named like org/name")


def _hidden(path: Path, root: Path) -> bool:
    # As pyarrow.dataset: ".tmp-part-*" files still being written, and ".rmscore/", are not data.
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _looks_like_hub_name(path: str) -> bool:
    parts = path.split("/")
    return len(parts) <= 2 and not path.startswith((".", "/", "~")) and all(parts)


def _looks_like_file(path: str) -> bool:
    """A data file's extension, or any extension on a name without an owner/ part ("data.xlsx"):
    a missing file, never a Hub dataset."""
    return path.endswith((*JSONL_SUFFIXES, *DELIMITED, ".parquet", ".gz")) or ("/" not in path and "." in path)


def _first_byte(path: Path) -> bytes:
    """The first byte that is not whitespace or a UTF-8 BOM ("[" for a JSON array); b"" if unreadable."""
    try:
        with open_bytes(path, lines=False) as handle:
            return handle.read(1 << 16).removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    except (OSError, EOFError):
        return b""  # the reader that opens it next says what is wrong


class JsonlSource(Source):
    def __init__(self, files: list[Path], description: str):
        self.files, self.description, self.breaks = files, description, []
        if files[0].name.endswith((".jsonl", ".json", ".ndjson")) and _first_byte(files[0]).startswith(b"\x1f"):
            raise InputError(f"{files[0]} is gzip-compressed", f"rename it {files[0].name}.gz")
        self.columns = self._peek_columns()

    def rows(self) -> Iterator[RawRow]:
        index, self.breaks = 0, []
        for path in self.files:
            number = 0
            try:
                handle = open_bytes(path)
            except OSError as exc:  # unreadable (permissions): said once, the other files are read
                self.breaks.append(broke_off(path, "line", 0, exc))
                continue
            with handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        yield parse_line(index, number, line)
                        index += 1
                if read_error(handle):  # a .gz cut short, a disk error: the lines before it stand
                    self.breaks.append(broke_off(path, "line", number, read_error(handle)))



def parse_line(index: int, number: int, raw: bytes) -> RawRow:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRow(index, None, f"not valid UTF-8 (line {number:,}: byte 0x{raw[exc.start]:02x} at "
                                   f"position {exc.start + 1})")
    try:
        data = json.loads(line.removeprefix("\ufeff") if number == 1 else line)
    except json.JSONDecodeError as exc:
        return RawRow(index, None, f"not valid JSON (line {number:,}: {exc.msg} at column {exc.colno})")
    if not isinstance(data, dict):
        return RawRow(index, None, f"not a JSON object but {JSON_KINDS.get(type(data), 'JSON')} (line {number:,})")
    return RawRow(index, data)


class ParquetSource(Source):
    def __init__(self, files: list[Path], description: str):
        import pyarrow.parquet as pq

        self.files, self.description = files, description
        try:
            schema = pq.read_schema(files[0])
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"cannot read Parquet file {files[0]}: {exc}") from exc
        self.columns = list(schema.names)
        if sum(pq.ParquetFile(f).metadata.num_rows for f in files[:1]) == 0 and len(files) == 1:
            raise InputError(f"{description} has no rows")

    def rows(self) -> Iterator[RawRow]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        index, self.breaks = 0, []
        for path in self.files:
            start = index
            try:
                # Record batches keep memory bounded whatever the file size.
                for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                    for data in batch.to_pylist():
                        yield RawRow(index, data)
                        index += 1
            except (OSError, pa.ArrowException) as exc:  # a corrupt page: the rows before it stand
                self.breaks.append(broke_off(path, "row", index - start, exc))


class _DatasetsSource(Source):
    dataset = None

    def rows(self) -> Iterator[RawRow]:
        for index, data in enumerate(self.dataset):
            yield RawRow(index, data)


def _datasets():
    """`datasets` is needed for Hub names and save_to_disk folders only, so rmscore imports and
    reads JSONL/Parquet without it (GPU images often lack it)."""
    try:
        import datasets
    except ImportError:
        raise InputError("reading Hub datasets and save_to_disk folders needs the `datasets` package",
                         "pip install datasets, or give the input as JSONL or Parquet") from None
    return datasets


class DiskSource(_DatasetsSource):
    def __init__(self, path: Path, split: str):
        datasets = _datasets()
        try:
            dataset = datasets.load_from_disk(str(path))  # memory-mapped Arrow: bounded memory
        except Exception as exc:
            raise InputError(f"cannot load save_to_disk folder {path}: {exc}") from exc
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise InputError(f"{path} has no split {split!r}", f"choose --split from {sorted(dataset)}")
            dataset = dataset[split]
        if len(dataset) == 0:
            raise InputError(f"{path} has no rows")
        self.dataset, self.columns = dataset, list(dataset.column_names)
        self.description = f"{path} (save_to_disk, {len(dataset)} rows)"


class HubSource(_DatasetsSource):
    def __init__(self, name: str, split: str, config_name: str | None):
        datasets = _datasets()
        try:
            dataset = datasets.load_dataset(name, config_name, split=split, streaming=True)
            first = next(iter(dataset), None)
        except Exception as exc:
            raise InputError(
                f"cannot load Hub dataset {name!r} (split {split!r}): {str(exc).splitlines()[0]}",
                "check the name, --split and --config, and network access (or a local cache)",
            ) from exc
        if first is None:
            raise InputError(f"Hub dataset {name!r} split {split!r} has no rows")
        self.dataset, self.columns = dataset, list(first)
        self.description = f"{name} (Hub, split {split})"
