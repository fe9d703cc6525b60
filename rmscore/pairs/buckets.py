"""Grouping scored rows by prompt in bounded memory, for build-pairs: check the part files, then
hand out all rows of each prompt together.

A prompt's rows can be anywhere: a prompt may repeat across input rows, part files and shards. So
rows are grouped by hashing: with K buckets, a row goes to bucket stable_bucket(prompt_id, K), all
rows of a prompt land in the same bucket, and a bucket holds about 1/K of the data.
  K = 1 (the needed columns fit in BUCKET_BYTES): one read of the needed columns.
  K > 1: one pass spills the needed columns into K bucket files (a temporary folder beside the
         output; rows wait in memory until they make a row group, SPILL_BYTES in all), then each
         bucket is read back alone. I/O is one read, one write and one read of the needed columns
         whatever K is; peak memory is one bucket (BUCKET_BYTES of columns) up to MAX_BUCKETS
         buckets, then buckets grow with the input.
Within a bucket, rows are sorted by (prompt_id, input_index, completion_index) and turned into
Python objects one slice at a time; prompts stay in Arrow until a pair needs one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rmscore.errors import ConfigError, InputError
from rmscore.pairs.select import Completion
from rmscore.score.records import SCORED_STATUSES, stable_bucket
from rmscore.store.scored import INDEXED, objective, objective_names, scored_files

# Uncompressed bytes of the needed columns per bucket (~6x that in RAM while a bucket is paired).
# Small enough that 100k rows of ordinary completions already fill buckets to this size, so the
# peak no longer grows with the input: with 64 MiB, 100k rows made 2 part-filled buckets and 1M rows
# 14 full ones, and the peak grew 525 -> 800 MiB; with 16 MiB a 1M-row run still peaked ~45 MiB
# above a 100k-row one, with 8 MiB ~23 MiB (issue 28). I/O is the same whatever the count.
BUCKET_BYTES = 8 * 2**20
# Beyond this many, buckets grow instead: each bucket costs a spill writer and a part the final merge
# holds open, and at 4M rows 418 buckets peaked at 574 MiB in 181 s where 128 took 368 MiB in 121 s.
# So the peak is flat up to MAX_BUCKETS x BUCKET_BYTES (1 GiB of needed columns, ~1.2M ArmoRM-shaped
# rows) and grows slowly past it.
MAX_BUCKETS = 128
# Uncompressed bytes the spill pass's K open Parquet writers hold together. A writer keeps its row
# group in memory until the group is full, and pyarrow's default group is 1Mi rows: with the
# default, every bucket's whole spill stayed in memory until the end of the pass (1M ArmoRM-shaped
# rows peaked at 1.0 GiB, 4M at 2.6 GiB). Groups of SPILL_BYTES / K keep the pass flat.
SPILL_BYTES = 16 * 2**20
SPILL_MIN_ROWS = 64  # a floor of 1,024 rows made K writers hold K x 1,024 rows once K passed ~250
KEY_COLUMNS = ("prompt_id", "input_index", "completion_index", "status", "completion", "prompt", "prompt_is_text")
SLICE_ROWS = 4096
READS = {"inspect": "inspect reads the folders written by rmscore score and the pairs files of rmscore build-pairs"}
MODEL_SCORES = "model_scores"  # rmscore combine's column: each model's own score, in argument order


@dataclass
class ScoredInput:
    files: list[Path]
    columns: list[str]  # what build-pairs reads: KEY_COLUMNS + the score column's source
    schema: pa.Schema  # of the rows handed out: KEY_COLUMNS + the score column (an objective picked out)
    metadata: dict  # the scoring run's provenance (first file that has it)
    nbytes: int  # uncompressed size of those columns, from the Parquet footers
    rows: int  # rows in the files, from the Parquet footers
    projection: dict = field(default_factory=dict)  # output column -> expression over `columns`
    models: list[str] = field(default_factory=list)  # the reward models recorded, when more than one
    combined: bool = False  # output of rmscore combine: each row has model_scores, one per model

    @property
    def score_column(self) -> str:
        return self.schema.names[len(KEY_COLUMNS)]


def open_scored(inputs: list[str], score_column: str, allow_mixed_models: bool = False, allow_partial: bool = False,
                command: str = "build-pairs", extra: tuple[str, ...] = ()) -> ScoredInput:
    """`command` (build-pairs, inspect) is named in what a refusal says; `extra`: more columns to hand
    out, after the score column (those the first file has)."""
    files = list(dict.fromkeys(f.resolve() for path in inputs for f in scored_files(path, allow_partial)))
    checked = [_check_file(path, score_column, command) for path in files]
    metas = {path: metadata for path, (metadata, _, _) in zip(files, checked) if metadata}
    models = _check_models(metas, allow_mixed_models)
    _, expression, kind = checked[0]
    if expression is None:  # a numeric column
        expression, source = pc.field(score_column), score_column
    else:  # one objective of a list column: rewards[i], or ArmoRM's objective name
        match = INDEXED.match(score_column)
        source = match["column"] if match else "rewards"
    columns = [*KEY_COLUMNS, source]  # the score column is numeric: never one of KEY_COLUMNS
    first = pq.read_schema(files[0])
    schema = pa.schema([first.field(c) for c in KEY_COLUMNS] + [pa.field(score_column, kind)])
    projection = {c: pc.field(c) for c in KEY_COLUMNS} | {score_column: expression}
    combined = all(MODEL_SCORES in pq.read_schema(path).names for path in files)
    if combined:  # after the score column: readers find it last but one
        columns.append(MODEL_SCORES)
        schema = schema.append(first.field(MODEL_SCORES))
        projection[MODEL_SCORES] = pc.field(MODEL_SCORES)
    for name in (c for c in extra if c in first.names and c not in projection):
        columns.append(name)
        schema = schema.append(first.field(name))
        projection[name] = pc.field(name)
    nbytes = sum(_column_bytes(path, columns) for path in files)
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return ScoredInput(files, columns, schema, next(iter(metas.values()), {}), nbytes, rows, projection, models,
                       combined)


def recorded_model(metadata: dict, by_digest: bool) -> tuple:
    """A scored file's model identity: its content digest and revision when recorded (a copied
    checkpoint is the same model), else, for output of older versions, the -m string and revision."""
    if by_digest:
        return ("digest", metadata["model_digest"], metadata.get("revision"))
    return ("name", metadata["model"], metadata.get("revision"))


def shown_model(metadata: dict, by_digest: bool) -> str:
    """The model for a message: where it was found, and its digest (the path is for display only)."""
    if by_digest:
        return f"{metadata.get('model_path') or metadata['model']} [digest {metadata['model_digest']}]"
    return metadata["model"] + (f" (revision {metadata['revision']})" if metadata.get("revision") else "")


def _check_models(metas: dict[Path, dict], allow_mixed: bool) -> list[str]:
    """Scores of different reward models do not compare: refuse to pair them unless allowed."""
    named = {path: m for path, m in metas.items() if m.get("model")}
    by_digest = all(m.get("model_digest") for m in named.values())
    models = {}
    for path, m in named.items():
        models.setdefault(recorded_model(m, by_digest), (shown_model(m, by_digest), path))
    models = dict(models.values())
    if len(models) > 1 and not allow_mixed:
        shown = "; ".join(f"{model} in {path}" for model, path in sorted(models.items())[:3])
        raise ConfigError(f"the inputs were scored by {len(models)} different reward models ({shown}): "
                          "their scores do not compare",
                          "build pairs from one model's output at a time, or pass --allow-mixed-models if they do")
    return sorted(models) if len(models) > 1 else []


def _check_file(path: Path, score_column: str, command: str) -> tuple[dict, object, pa.DataType]:
    """The file's provenance, the expression picking an objective (None for a plain column) and the
    score's type; raises if it is not scored output or has no such numeric score."""
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    missing = [c for c in KEY_COLUMNS if c not in schema.names]
    if missing:
        raise InputError(f"{path} is not rmscore score output: it has no {', '.join(missing)} column",
                         READS.get(command, f"{command} reads the Parquet files written by rmscore score"))
    metadata = json.loads((schema.metadata or {}).get(b"rmscore", b"{}"))
    numeric = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    numeric = [n for n in numeric if n not in ("input_index", "completion_index", "num_tokens")]
    if score_column in numeric:
        return metadata, None, schema.field(score_column).type
    picked = None if score_column in schema.names else objective(schema, metadata, score_column)
    if picked is None:
        what = "is not numeric" if score_column in schema.names else "does not exist"
        raise InputError(f"score column {score_column!r} {what} in {path}",
                         f"pick one with --score-column: {', '.join(numeric) or 'none found'}"
                         f"{objective_names(metadata)}")
    return metadata, *picked


def _column_bytes(path: Path, columns: list[str]) -> int:
    meta = pq.ParquetFile(path).metadata
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema.split(".")[0] in columns:  # nested leaves: prompt.list.element.role
                total += chunk.total_uncompressed_size
    return total


def bucket_count(scored: ScoredInput, requested: int | None) -> int:
    return requested or min(MAX_BUCKETS, max(1, math.ceil(scored.nbytes / BUCKET_BYTES)))


def dataset(scored: ScoredInput) -> ds.Dataset:
    """The files' needed columns as stored (an objective still inside its list column)."""
    physical = pq.read_schema(scored.files[0])
    return ds.dataset([str(f) for f in scored.files], schema=pa.schema([physical.field(c) for c in scored.columns]),
                      format="parquet")


def usable_rows(scored: ScoredInput) -> pc.Expression:
    """The rows build-pairs and build-sft can use: a scored status, a finite score, a prompt id and a text."""
    return (pc.field("status").isin(list(SCORED_STATUSES)) & pc.field("prompt_id").is_valid()
            & pc.field("completion").is_valid() & pc.is_finite(scored.projection[scored.score_column]))


def iter_buckets(scored: ScoredInput, buckets: int, spill_dir: Path, keep_empty: bool = False) -> Iterator[pa.Table]:
    """Tables that each hold every row of the prompts they contain; keep_empty: one per bucket,
    empty or not (so several inputs' buckets line up)."""
    data = dataset(scored)
    if buckets == 1:
        yield data.to_table(columns=scored.projection)
        return
    files = spill(data, scored, buckets, spill_dir)
    for b in range(buckets):
        if b in files:
            with pa.ipc.open_stream(files[b]) as reader:
                yield reader.read_all()
        elif keep_empty:
            yield scored.schema.empty_table()
        # What the consumer freed with the bucket (its rows as Python objects, sorted copies): kept,
        # it piled up over the buckets (build-sft, 1M rows in 53 buckets: 342 MiB, 100k in 6: 278).
        release_memory()


def spill(data: ds.Dataset, scored: ScoredInput, buckets: int, spill_dir: Path) -> dict[int, Path]:
    """Write the rows into one file per bucket; bucket -> file (buckets with rows only).

    Each bucket's rows wait in memory until they make a batch of spill_group_rows, so the K buckets
    together hold about SPILL_BYTES, plus the batch being split. The files are Arrow IPC streams
    (LZ4): a stream keeps nothing per batch written, where a Parquet writer keeps every row group's
    metadata until it closes, and the spill writes K x (rows / group) groups, which grows with the
    square of the input (issue 28). pyarrow's write_dataset queued rows on its own terms and held
    ~140 MiB more at 1M rows than at 100k."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    group = spill_group_rows(scored, buckets)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    files: dict[int, Path] = {}
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    waiting: dict[int, list[pa.Table]] = {}  # per bucket: its rows not yet written, and how many
    counts: dict[int, int] = {}

    def flush(bucket: int) -> None:
        if bucket not in writers:
            files[bucket] = spill_dir / f"bucket-{bucket:05d}.arrows"
            writers[bucket] = pa.ipc.new_stream(files[bucket], scored.schema, options=options)
        writers[bucket].write_table(pa.concat_tables(waiting.pop(bucket)).combine_chunks())
        counts[bucket] = 0

    try:
        for table, bucket_of in _with_buckets(data, scored.projection, buckets):
            order = np.argsort(bucket_of, kind="stable")  # rows of one bucket together, in read order
            ids = bucket_of[order]
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            for start, end in zip(starts, np.r_[starts[1:], len(ids)]):
                bucket = int(ids[start])
                waiting.setdefault(bucket, []).append(table.take(order[start:end]))  # a copy: the batch is freed
                counts[bucket] = counts.get(bucket, 0) + int(end - start)
                if counts[bucket] >= group:
                    flush(bucket)
            release_memory()  # the batch's split and what the flushes freed (combine 1M: 356 -> ~290 MiB)
        for bucket in list(waiting):
            flush(bucket)
    finally:
        for writer in writers.values():
            writer.close()
    return dict(sorted(files.items()))


def spill_group_rows(scored: ScoredInput, buckets: int) -> int:
    """Rows per written batch of a spilled bucket, so that the K buckets' waiting rows hold SPILL_BYTES."""
    row_bytes = max(1, scored.nbytes // max(1, scored.rows))
    return int(min(2**20, max(SPILL_MIN_ROWS, SPILL_BYTES // (buckets * row_bytes))))


def scan(data: ds.Dataset, columns, filter: pc.Expression | None = None,
         batch_size: int = 16384) -> Iterator[pa.RecordBatch]:
    """The dataset's batches in file order, reading only what the batch in hand needs."""
    # No read-ahead: with threads, the scanner reads on while the (slower) consumer works, and queues
    # what it read (a 1M-row spill held 550 MiB of Arrow memory at its middle; issue 28). No
    # pre-buffering either: the Parquet reader's pre-buffer cache of coalesced column chunks grew
    # with the rows read (build-sft, 1M rows: 487 MiB, 336 without it; 100k: ~330 either way).
    scanner = data.scanner(columns=columns, filter=filter, batch_size=batch_size, batch_readahead=0,
                           fragment_readahead=0, use_threads=False,
                           fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
    return scanner.to_batches()


def _with_buckets(data: ds.Dataset, projection: dict, buckets: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The needed columns a batch at a time, each with its rows' buckets."""
    for batch in scan(data, projection):
        ids = batch.column("prompt_id")
        unique = pc.unique(ids).drop_null()
        bucket_of = pa.array([stable_bucket(k, buckets) for k in unique.to_pylist()], pa.int32())
        found = pc.index_in(ids, value_set=unique)
        column = pc.fill_null(pc.take(bucket_of, found), 0)  # rows without a prompt id: bucket 0
        yield pa.Table.from_batches([batch]), column.to_numpy(zero_copy_only=False)


def sort_by_prompt(table: pa.Table) -> pa.Table:
    return table.sort_by([("prompt_id", "ascending"), ("input_index", "ascending"), ("completion_index", "ascending")])


def iter_groups(table: pa.Table, score_column: str) -> Iterator[tuple[str | None, list[Completion]]]:
    """(prompt_id, its completions) of a table sorted by sort_by_prompt; rows without an id come
    last. Completion.row is the row in `table`. Columns are converted a slice at a time (column
    by column: several times faster than row dicts)."""
    names = ("prompt_id", "input_index", "completion_index", "completion", score_column, "status")
    current, group = None, []
    for start in range(0, table.num_rows, SLICE_ROWS):
        piece = table.slice(start, SLICE_ROWS)
        columns = [piece.column(name).to_pylist() for name in names]
        models = piece.column(MODEL_SCORES).to_pylist() if MODEL_SCORES in piece.column_names else [None] * len(piece)
        for row, (prompt_id, index, position, text, score, status, each) in enumerate(zip(*columns, models), start):
            if group and prompt_id != current:
                yield current, group
                group = []
            current = prompt_id
            group.append(Completion((index, position), text, score, status, row, each))
    if group:
        yield current, group


def release_memory() -> None:
    """Give the memory freed so far back to the system (Arrow's pool, then glibc's heap), so the next
    phase or batch does not stack on top of it. Freed buffers of many batches otherwise stay in the
    process, more the longer a run goes: inspect kept ~50 MiB more at 1M rows than at 100k after its
    read pass, combine's spill and buckets ~65 MiB more (glibc only for the heap)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another libc). Looked up once: find_library takes ~8 ms."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
