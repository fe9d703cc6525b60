"""Reading a pairs file from `rmscore build-pairs` for `rmscore inspect`, batch by batch.

Per pair only numbers are kept: the two scores, the margin, the prompt's code and the length in
characters of each answer (the same measure as build-pairs --max-length-ratio). In every format
the answer is the last message of `chosen` / `rejected` (conversational, simpo), or the string
itself (standard).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmscore.errors import InputError
from rmscore.inspect.read_scored import BATCH_ROWS, to_floats, to_ints

COLUMNS = ("prompt_id", "chosen", "rejected", "score_chosen", "score_rejected")


@dataclass
class PairColumns:
    file: Path
    metadata: dict  # the pairs file's own: kind, model, build_pairs settings, scoring provenance
    groups: np.ndarray  # (pairs,) prompt code
    score_chosen: np.ndarray  # (pairs,) float64
    score_rejected: np.ndarray
    chars_chosen: np.ndarray  # (pairs,) int64, -1 when there is no answer text
    chars_rejected: np.ndarray
    agreement: np.ndarray | None = None  # (pairs,) built from a combined folder: share of models preferring chosen

    @property
    def margin(self) -> np.ndarray:
        return self.score_chosen - self.score_rejected


def read_pairs(path: str | Path) -> PairColumns:
    path = Path(os.path.abspath(path))  # as given: no library may expand a literal "~" (pyarrow does)
    reader = pq.ParquetFile(path)
    missing = [c for c in COLUMNS if c not in reader.schema_arrow.names]
    if missing:
        raise InputError(f"{path} has no column {', '.join(missing)}: it is not a pairs file from rmscore build-pairs",
                         "give the file written by rmscore build-pairs -o, or a scored folder")
    extra = ["agreement"] if "agreement" in reader.schema_arrow.names else []
    parts: dict[str, list] = {c: [] for c in COLUMNS + tuple(extra)}
    for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=list(COLUMNS) + extra):
        parts["prompt_id"].append(batch.column("prompt_id").cast(pa.string()))
        for side in ("chosen", "rejected"):
            parts[side].append(answer_chars(batch.column(side)))
            parts[f"score_{side}"].append(to_floats(batch.column(f"score_{side}")))
        if extra:
            parts["agreement"].append(to_floats(batch.column("agreement")))
    ids = pa.chunked_array(parts.pop("prompt_id"), pa.string()).combine_chunks()
    groups = to_ints(ids.dictionary_encode().indices)
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    meta = json.loads((reader.schema_arrow.metadata or {}).get(b"rmscore", b"{}"))
    return PairColumns(path, meta, groups, joined["score_chosen"], joined["score_rejected"], joined["chosen"],
                       joined["rejected"], joined.get("agreement"))


def answer_chars(column: pa.Array) -> np.ndarray:
    """Characters of each row's answer: the string, or the last message's content."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return to_ints(pc.utf8_length(column))
    out = np.full(len(column), -1, np.int64)
    parents = pc.list_parent_indices(column).to_numpy()  # (messages,) the row of each message
    if not len(parents):
        return out
    last = np.flatnonzero(np.r_[parents[1:] != parents[:-1], True])  # (rows with messages,) last message
    content = pc.list_flatten(column).field("content")
    out[parents[last]] = to_ints(pc.utf8_length(content.take(pa.array(last))))
    return out
