"""Streaming raw rows out of JSONL, Parquet, `save_to_disk` folders and Hub datasets.

Every source is opened and peeked before any model loads, so an unreadable input stops the run at
once. Rows are yielded one at a time with their position in the input; nothing is materialised.
A line that is not valid JSON is yielded as a problem row (counted and written, never dropped).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from rmscore.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz")
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass(slots=True)
class RawRow:
    index: int
    data: dict | None
    error: str | None = None


class Source:
    """A readable input. `columns` is known before the first row is consumed."""

    description: str
    columns: list[str]

    def rows(self) -> Iterator[RawRow]:
        raise NotImplementedError


def open_source(path: str, split: str = "train", config_name: str | None = None) -> Source:
    p = Path(path)
    if p.is_file():
        if p.name.endswith(".parquet"):
            return ParquetSource([p], str(p))
        if p.name.endswith(JSONL_SUFFIXES):
            return JsonlSource([p], str(p))
        raise InputError(
            f"cannot tell the format of {path}",
            "give a .jsonl, .jsonl.gz or .parquet file, a Parquet folder, or a save_to_disk folder",
        )
    if p.is_dir():
        if any((p / marker).exists() for marker in DISK_MARKERS):
            return DiskSource(p, split)
        parquet = sorted(f for f in p.rglob("*.parquet") if not _hidden(f, p))
        if parquet:
            return ParquetSource(parquet, f"{path} ({len(parquet)} Parquet files)")
        jsonl = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(JSONL_SUFFIXES) and not _hidden(f, p))
        if jsonl:
            return JsonlSource(jsonl, f"{path} ({len(jsonl)} JSONL files)")
        raise InputError(f"{path} holds no .parquet or .jsonl files and is not a save_to_disk folder")
    if _looks_like_hub_name(path):
        return HubSource(path, split, config_name)
    raise InputError(f"input not found: {path}", "check the path, or give a Hub dataset name like org/name")


def _hidden(path: Path, root: Path) -> bool:
    # As pyarrow.dataset: ".tmp-part-*" files still being written, and ".rmscore/", are not data.
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _looks_like_hub_name(path: str) -> bool:
    parts = path.split("/")
    return len(parts) <= 2 and not path.startswith((".", "/", "~")) and all(parts)


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


class JsonlSource(Source):
    def __init__(self, files: list[Path], description: str):
        self.files, self.description = files, description
        first = next((row for row in islice(self._rows(), 1000) if row.data is not None), None)
        if first is None:
            raise InputError(f"{description} is empty or has no valid JSON object in its first lines")
        self.columns = list(first.data)

    def rows(self) -> Iterator[RawRow]:
        return self._rows()

    def _rows(self) -> Iterator[RawRow]:
        index = 0
        for path in self.files:
            try:
                with _open_text(path) as handle:
                    for line in handle:
                        if not line.strip():
                            continue
                        yield _parse_line(index, line)
                        index += 1
            except (OSError, UnicodeDecodeError, EOFError) as exc:
                raise InputError(f"cannot read {path}: {exc}") from exc


def _parse_line(index: int, line: str) -> RawRow:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return RawRow(index, None, f"line is not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(data, dict):
        return RawRow(index, None, f"line is a JSON {type(data).__name__}, not an object")
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
        import pyarrow.parquet as pq

        index = 0
        for path in self.files:
            # Record batches keep memory bounded whatever the file size.
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for data in batch.to_pylist():
                    yield RawRow(index, data)
                    index += 1


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
