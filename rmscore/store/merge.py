"""`rmscore merge`: every shard's parts into one Parquet file, in input order, each row once.

Each shard's parts hold disjoint runs of its rows in key order, so a shard read part after part
(by first key) is a sorted stream. The streams are merged a batch at a time: everything up to the
smallest "last key" among the current batches can be written, because no stream can still hold
a smaller key. Memory holds one batch per shard. A row key seen before (a part copied twice, a
shard scored twice) is dropped and counted. A part saved by a stop mid-window holds a set of keys
that interleaves with the next part's run (rmscore/store/resume.py): it is a stream of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.distributed import completion, layout
from rmscore.errors import ConfigError, InputError, ResumeConflict
from rmscore.read import promote
from rmscore.store import conform, resume
from rmscore.store.output import EXACT_KEYS
from rmscore.store.writers import existing_parts

KEYS = ("input_index", "completion_index")
# Rows held across all shards' current batches, and rows per written row group. Smaller than they
# were (32,768 and 65,536): with those, the allocators kept more of what the big batches churned the
# longer a merge ran, and a 1M-row merge peaked 30-42 MiB above a 100k-row one (issue 28; with
# the CLI's Arrow allocator, rmscore/cli/app.py, the two peak within a few MiB).
ROWS_IN_MEMORY = 1 << 12
ROW_GROUP = 1 << 13


@dataclass
class MergeSummary:
    output: str
    shards: int = 0
    parts: int = 0
    rows: int = 0
    duplicates: int = 0


def merge(out_dir: Path, dest: Path, overwrite: bool = False) -> MergeSummary:
    # Absolute, as given: no library may expand a literal "~" (pyarrow does).
    out_dir, dest = Path(os.path.abspath(out_dir)), Path(os.path.abspath(dest))
    count, missing = completion.missing_shards(out_dir)
    if missing:
        raise layout.unfinished(out_dir, count, missing, resume.read_manifests(out_dir))
    _check_limits(out_dir, count)
    _check_dest(out_dir, dest, overwrite)
    _check_same_settings(out_dir)
    stems = [f"{i:05d}-of-{count:05d}" for i in range(count)]
    _check_parts(out_dir, stems)
    parts = {stem: existing_parts(out_dir, stem) for stem in stems}
    summary = MergeSummary(str(dest), count, sum(map(len, parts.values())))
    schema = _schema([p for ps in parts.values() for p in ps], count)
    runs = [run for ps in parts.values() for run in _sorted_runs(ps)]
    batch_rows = max(256, ROWS_IN_MEMORY // len(runs))
    streams = [_stream(run, schema, batch_rows) for run in runs]
    tmp = _tmp_path(dest)
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for table in _regroup(merged(streams, summary)):
            writer.write_table(table)
    os.replace(tmp, dest)
    return summary


def merged(streams: list[Iterator[pa.Table]], summary: MergeSummary) -> Iterator[pa.Table]:
    heads = {i: t for i, s in enumerate(streams) if (t := next(s, None)) is not None}
    last = None  # the largest key written so far
    while heads:
        frontier = min(_max_key(t) for t in heads.values())
        taken = []
        for i, table in list(heads.items()):
            upto = _at_most(table, frontier)
            taken.append(table.filter(pa.array(upto)))
            rest = table.filter(pa.array(~upto))
            heads[i] = rest if rest.num_rows else next(streams[i], None)
            if heads[i] is None:
                del heads[i]
        table, last = _sorted_unique(pa.concat_tables(taken), last, summary)
        summary.rows += table.num_rows
        yield table


def _keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    return table["input_index"].to_numpy(), table["completion_index"].to_numpy()


def _max_key(table: pa.Table) -> tuple[int, int]:
    ii, cc = _keys(table)
    top = np.lexsort((cc, ii))[-1]
    return int(ii[top]), int(cc[top])


def _at_most(table: pa.Table, key: tuple[int, int]) -> np.ndarray:
    ii, cc = _keys(table)
    return (ii < key[0]) | ((ii == key[0]) & (cc <= key[1]))


def _sorted_unique(table: pa.Table, last, summary: MergeSummary):
    table = table.sort_by([(k, "ascending") for k in KEYS])
    ii, cc = _keys(table)
    keep = np.ones(len(ii), dtype=bool)
    keep[1:] = (ii[1:] != ii[:-1]) | (cc[1:] != cc[:-1])
    if last is not None:
        keep &= (ii > last[0]) | ((ii == last[0]) & (cc > last[1]))
    summary.duplicates += int((~keep).sum())
    table = table.filter(pa.array(keep))
    if table.num_rows:
        last = (table["input_index"][-1].as_py(), table["completion_index"][-1].as_py())
    return table, last


def _stream(parts: list[Path], schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
    """One shard's rows, part after part in key order."""
    for path in sorted(parts, key=_first_key):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            if batch.num_rows:
                yield promote.fit_table(pa.Table.from_batches([batch]), schema)


def _sorted_runs(parts: list[Path]) -> list[list[Path]]:
    """One shard's parts as sorted streams: the contiguous parts together, each exact-key part alone."""
    exact = [p for p in parts if EXACT_KEYS in (pq.read_schema(p).metadata or {})]
    return [[p for p in parts if p not in exact], *([p] for p in exact)]


def _first_key(path: Path) -> tuple[int, int]:
    first = pq.ParquetFile(path).read_row_group(0, columns=list(KEYS)).slice(0, 1).to_pylist()[0]
    return first["input_index"], first["completion_index"]


def _regroup(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Merge steps can be small; Parquet wants row groups of a useful size."""
    buffer, rows = [], 0
    for table in tables:
        buffer.append(table)
        rows += table.num_rows
        if rows >= ROW_GROUP:
            yield pa.concat_tables(buffer)
            buffer, rows = [], 0
    if rows:
        yield pa.concat_tables(buffer)


def _schema(parts: list[Path], shards: int) -> pa.Schema:
    schemas = [pq.read_schema(p) for p in parts]
    if not schemas:
        raise InputError("the finished shards hold no rows")
    merged_schema = conform.folder_schema(parts)  # the parts' one schema (a folder of older rmscore: promoted)
    meta = json.loads((schemas[0].metadata or {}).get(b"rmscore", b"{}"))
    return merged_schema.with_metadata({"rmscore": json.dumps({**meta, "merged_shards": shards})})


def _check_dest(out_dir: Path, dest: Path, overwrite: bool) -> None:
    if dest.resolve().is_relative_to(out_dir.resolve()):
        raise ConfigError(f"-o {dest} is inside {out_dir}", "write the merged file outside the shard folder, "
                          "or readers of the folder would count every row twice")
    if dest.is_dir():  # never replaced by a file, --overwrite or not
        raise ConfigError(f"-o {dest} is a folder", "-o names the merged Parquet file, e.g. scored.parquet")
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} already exists", "pass --overwrite to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _tmp_path(dest).unlink(missing_ok=True)  # left by a merge killed before its rename


def _tmp_path(dest: Path) -> Path:
    return dest.with_name(f".tmp-{dest.name}")


def _check_parts(out_dir: Path, stems: list[str]) -> None:
    """Every part a finished shard recorded must still be there, or rows would silently go missing."""
    manifests = resume.read_manifests(out_dir)
    for stem in stems:
        for rec in manifests.get(stem, {}).get("parts", []):
            if not (out_dir / rec["file"]).is_file():
                raise InputError(f"{rec['file']} (shard {stem}) is missing from {out_dir}",
                                 "rerun that shard: it scores the missing rows again, then merge")


def _check_same_settings(out_dir: Path) -> None:
    manifests = list(resume.read_manifests(out_dir).values())
    for key in ("settings", "resolved"):
        ref = next((m[key] for m in manifests if m.get(key)), None)
        for manifest in manifests:
            if ref is not None and manifest.get(key) and (diffs := resume.differences(ref, manifest[key])):
                raise ResumeConflict(f"the shards in {out_dir} were scored with different settings: {diffs[0]}",
                                     "rerun the odd shards with the others' settings and --overwrite")


def _check_limits(out_dir: Path, count: int) -> None:
    """Shards that read different --limit cover different rows of the input: refuse, as for missing shards."""
    by_limit: dict = {}
    for shard, limit in enumerate(completion.limits(out_dir, count)):
        by_limit.setdefault(limit, []).append(shard)
    if len(by_limit) > 1:
        said = "; ".join(f"shard{'s' if len(shards) > 1 else ''} {layout.ranges(shards, ', ')} "
                         + ("with no --limit" if limit is None else f"with --limit {limit}")
                         for limit, shards in sorted(by_limit.items(), key=lambda item: item[1]))
        raise InputError(f"the shards in {out_dir} read different parts of the input: {said}",
                         "re-run the odd shards with the --limit the others used (or none): a rerun resumes "
                         "where it stopped; then merge")
