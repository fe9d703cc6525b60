"""One schema for every part of a scored folder, on disk.

Each window's kept columns take the type of what the run had seen so far (rmscore/read/promote.py),
so parts written by other windows, shards or runs can disagree: int in one, float or text in
another. pyarrow.dataset, pandas and datasets.load_dataset take one part's schema for all and fail
on the others. So before a shard calls itself complete, `conform` rewrites every part of the folder
whose columns differ from the folder's schema; `rmscore merge` writes that schema too.

The folder's schema is the type rule over the parts' schemas, checked against the values: a column
that cannot take every part's values exactly (an int beyond 2^53 in an int part, floats in another)
becomes text. Parts are read and rewritten a batch at a time: memory holds one batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.read import promote
from rmscore.store.writers import existing_parts

BATCH_ROWS = 1 << 14
TMP_PREFIX = ".tmp-part-conform-"  # hidden, and matches no shard's own temporary names


def folder_schema(parts: list[Path]) -> pa.Schema:
    """The promoted schema of `parts`, every column able to hold every part's values exactly."""
    schemas = {path: pq.read_schema(path) for path in parts}
    target = promote.unify(list(schemas.values()))
    while bad := _inexact(schemas, target):
        for name in bad:
            target = target.set(target.get_field_index(name), pa.field(name, pa.string()))
    return target


def _inexact(schemas: dict[Path, pa.Schema], target: pa.Schema) -> set[str]:
    """Columns of `target` that some part's values do not fit (promote.fit_table would raise)."""
    bad = set()
    for path, schema in schemas.items():
        for field in schema:
            want = target.field(field.name).type
            if field.name in bad or field.type == want or pa.types.is_string(want) or pa.types.is_null(field.type):
                continue
            one = pa.schema([pa.field(field.name, want)])
            try:
                with pq.ParquetFile(path) as reader:
                    for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=[field.name]):
                        promote.fit_table(pa.Table.from_batches([batch]), one)
            except promote.CONVERSION:
                bad.add(field.name)
    return bad


def same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return a.remove_metadata().equals(b.remove_metadata())


def conform(out_dir: Path) -> int:
    """Rewrite the parts of `out_dir` whose columns differ from the folder's schema (each keeps its
    own metadata). Returns how many were rewritten. The caller holds the folder's lock."""
    for stale in Path(out_dir).glob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)  # a rewrite cut short by SIGKILL: the part itself is whole
    parts = existing_parts(out_dir)
    if not parts:
        return 0
    target = folder_schema(parts)
    rewritten = 0
    for path in parts:
        schema = pq.read_schema(path)
        if not same_columns(schema, target):
            rewrite(path, target.with_metadata(schema.metadata))
            rewritten += 1
    return rewritten


def rewrite(path: Path, schema: pa.Schema) -> None:
    """`path` with `schema`, written beside it and renamed over it: a reader sees one or the other."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    try:
        with pq.ParquetFile(path) as reader, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                writer.write_table(promote.fit_table(pa.Table.from_batches([batch]), schema))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
