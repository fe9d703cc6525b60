"""Reading what `rmscore inspect` needs, in bounded memory: needed columns only, batch by batch.

Per row, only small numbers are kept for every row (score, completion length, token count, status,
prompt code, step count). Texts are measured batch by batch and dropped; only the few extreme rows'
texts are kept. Wide columns (ArmoRM's objective vectors, PRM step scores and aggregates) are kept
for a uniform random sample of rows drawn up front (every row when there are fewer than the sample
size), so memory does not grow with them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmscore.errors import InputError
from rmscore.pairs.buckets import open_scored, release_memory
from rmscore.score.records import SCORED_STATUSES
from rmscore.store.scored import objective_source

BATCH_ROWS = 8192
BATCH_BYTES = 2 * 2**20  # of the columns read, per batch (batch_rows)
# ArmoRM: one value per objective (metadata "objectives" names them); combine: one score per model
VECTORS = ("rewards", "gating_output", "model_scores")
AGGREGATES = ("score_min", "score_prod", "score_mean", "score_last")
EXTREMES = 3
CUT_CHARS = 600  # of an example's text kept in memory: the report shows less


@dataclass
class Example:
    score: float
    index: int  # global row number: the tie-break, and where to find the prompt
    prompt_id: str | None
    chars: int
    text: str  # cut to CUT_CHARS
    file: Path
    row: int  # in its file
    prompt: str | None = None  # last user turn, filled in after the pass


@dataclass
class ScoredColumns:
    files: list[Path]
    metadata: dict
    score_column: str
    rows: int
    score: np.ndarray  # (rows,) float64, NaN where null
    usable: np.ndarray  # (rows,) bool: scored status and a finite score
    chars: np.ndarray  # (rows,) completion length in characters, -1 when null
    tokens: np.ndarray | None  # (rows,) num_tokens (prompt + completion as the model read them), -1 when null
    groups: np.ndarray  # (rows,) prompt code, -1 when the row has no prompt_id
    steps: np.ndarray | None  # (rows,) step scores per completion (PRMs), -1 when null
    status: Counter
    non_finite: Counter  # rows with a scored status (ok, truncated) but no finite score: NaN, +inf, -inf, null
    reasons: dict[str, Counter]  # status -> status_detail with numbers replaced by N -> rows
    sample: np.ndarray  # (k,) sorted global indices of the usable sampled rows
    drawn: int  # rows drawn for the sample, usable or not: all rows unless there are more than sample_rows
    wide: dict[str, np.ndarray] = field(default_factory=dict)  # per sampled usable row (flat for step_scores)
    highest: list[Example] = field(default_factory=list)
    lowest: list[Example] = field(default_factory=list)


def read_scored(inputs: list[str], score_column: str, sample_rows: int, texts: bool = True,
                allow_partial: bool = False) -> ScoredColumns:
    scored = open_scored(inputs, score_column, allow_partial=allow_partial, command="inspect")
    files = scored.files
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    drawn = np.sort(np.random.default_rng(0).choice(total, min(total, sample_rows), replace=False))
    acc = _Accumulator(score_column, drawn, texts, total)
    # A column, or one objective of a list column (ArmoRM's objective name, or rewards[i]).
    source = objective_source(pq.read_schema(files[0]), scored.metadata, score_column)
    if source is not None and score_column not in pq.read_schema(files[0]).names:
        acc.objective = source
    start = 0
    for path in files:
        reader = pq.ParquetFile(path)
        names = reader.schema_arrow.names
        wanted = [c for c in _wanted(acc.objective[0] if acc.objective else score_column) if c in names]
        acc.path, acc.file_start = path, start
        for batch in reader.iter_batches(batch_size=batch_rows(reader, wanted), columns=wanted):
            acc.add(batch, start)
            start += batch.num_rows
        release_memory()  # what this file's batches left free: else it piles up over the files
    cols = acc.finish(files, scored.metadata, total)
    for example in cols.highest + cols.lowest:
        example.prompt = _last_user_turn(example.file, example.row) if texts else None
    return cols


def _wanted(score_column: str) -> list[str]:
    return list(dict.fromkeys([score_column, "status", "status_detail", "prompt_id", "completion", "num_tokens",
                               "step_scores", *AGGREGATES, *VECTORS]))


class _Accumulator:
    """Folds record batches into ScoredColumns."""

    def __init__(self, score_column: str, drawn: np.ndarray, texts: bool, total: int):
        self.score_column, self.drawn, self.texts = score_column, drawn, texts
        self.objective: tuple[str, int] | None = None  # (list column, index) when scoring by one objective
        # Per-row numbers go straight into arrays of the final size (the row count is in the footers):
        # per-batch arrays joined at the end held every row twice at once, and every prompt_id string
        # was kept until the end to be dictionary-encoded (1M rows: ~60 MiB more at the end of the pass).
        self.columns: dict[str, np.ndarray | None] = {
            "score": np.empty(total, np.float64), "usable": np.empty(total, bool), "chars": np.empty(total, np.int32),
            "tokens": None, "steps": None, "groups": np.empty(total, np.int32)}  # optional ones made when first found
        self.total = total
        self.prompts = pa.array([], pa.string())  # the distinct prompt_ids, in order of first appearance
        self.sample_parts: list[np.ndarray] = []
        self.wide: dict[str, list[np.ndarray]] = {}
        self.status: Counter = Counter()
        self.non_finite: Counter = Counter()
        self.reasons: dict[str, Counter] = {}
        self.highest: list[Example] = []
        self.lowest: list[Example] = []
        self.path, self.file_start = Path(), 0  # the file being read, and its first global row

    def add(self, batch: pa.RecordBatch, start: int) -> None:
        n = batch.num_rows
        if self.objective:
            column, index = self.objective
            raw = pc.list_element(batch.column(column), index)
        else:
            raw = batch.column(self.score_column)
        score = to_floats(raw)
        status = batch.column("status") if "status" in batch.schema.names else pa.nulls(n, pa.string())
        scored = pc.is_in(status, pa.array(SCORED_STATUSES)).to_numpy(zero_copy_only=False)
        usable = np.isfinite(score) & scored
        self._count_statuses(batch, status)
        self._count_non_finite(score[scored], pc.is_null(raw).to_numpy(zero_copy_only=False)[scored])
        here = slice(start, start + n)
        self.columns["score"][here] = score
        self.columns["usable"][here] = usable
        self.columns["chars"][here] = to_ints(pc.utf8_length(batch.column("completion")))
        for name, column in (("tokens", "num_tokens"), ("steps", "step_scores")):
            values = batch.column(column) if column in batch.schema.names else None
            if values is None:
                if self.columns[name] is not None:
                    self.columns[name][here] = -1  # this file lacks it
                continue
            if name == "steps":
                values = pc.list_value_length(values)
            if self.columns[name] is None:
                self.columns[name] = np.full(self.total, -1, np.int32)  # -1 in the batches read before
            self.columns[name][here] = to_ints(values)
        self.columns["groups"][here] = self._codes(batch.column("prompt_id").cast(pa.string()))
        lo, hi = np.searchsorted(self.drawn, [start, start + n])
        local = self.drawn[lo:hi] - start
        local = local[usable[local]]  # (k_batch,) sampled rows that have a score
        self.sample_parts.append(local + start)
        self._add_wide(batch, local)
        self._add_extremes(batch, score, usable, start)

    def _codes(self, ids: pa.Array) -> np.ndarray:
        """Each row's prompt code: the prompt_id's place in the order of first appearance over the
        whole input (what dictionary-encoding every id at once gave), -1 without an id."""
        found = pc.unique(ids).drop_null()  # in order of first appearance in this batch
        new = found.filter(pc.invert(pc.is_in(found, value_set=self.prompts)))
        if len(new):
            self.prompts = pa.concat_arrays([self.prompts, new])
        return to_ints(pc.index_in(ids, value_set=self.prompts))

    def _count_non_finite(self, score: np.ndarray, null: np.ndarray) -> None:
        """Rows whose status says scored, by what their score is instead of a finite number."""
        for name, rows in (("null", null), ("NaN", np.isnan(score) & ~null), ("+inf", score == np.inf),
                           ("-inf", score == -np.inf)):
            if rows.any():
                self.non_finite[name] += int(rows.sum())

    def _count_statuses(self, batch: pa.RecordBatch, status: pa.Array) -> None:
        status = status.fill_null("(none)")
        for item in pc.value_counts(status).to_pylist():
            self.status[item["values"]] += item["counts"]
        if "status_detail" not in batch.schema.names:
            return
        detail = batch.column("status_detail")
        has = pc.is_valid(detail)
        if not pc.any(has).as_py():
            return
        table = pa.table({"status": status.filter(has),
                          "detail": pc.replace_substring_regex(detail.filter(has), r"\d+(\.\d+)?", "N")})
        for row in table.group_by(["status", "detail"]).aggregate([([], "count_all")]).to_pylist():
            self.reasons.setdefault(row["status"], Counter())[row["detail"]] += row["count_all"]

    def _add_wide(self, batch: pa.RecordBatch, local: np.ndarray) -> None:
        names = batch.schema.names
        take = pa.array(local, pa.int64())
        for name in AGGREGATES:
            if name in names:
                self.wide.setdefault(name, []).append(to_floats(batch.column(name).take(take)))
        if "step_scores" in names:
            self.wide.setdefault("step_scores", []).append(to_floats(pc.list_flatten(batch.column("step_scores")
                                                                                   .take(take))))
        for name in VECTORS:
            if name in names:
                self.wide.setdefault(name, []).append(_matrix(batch.column(name).take(take)))

    def _add_extremes(self, batch: pa.RecordBatch, score: np.ndarray, usable: np.ndarray, start: int) -> None:
        rows = np.flatnonzero(usable)
        if not len(rows):
            return
        for sign, kept in ((-1, "highest"), (1, "lowest")):
            best = rows[np.lexsort((rows, sign * score[rows]))[:EXTREMES]]
            candidates = getattr(self, kept) + [self._example(batch, score, int(i), start) for i in best]
            candidates.sort(key=lambda e: (sign * e.score, e.index))
            setattr(self, kept, candidates[:EXTREMES])

    def _example(self, batch: pa.RecordBatch, score: np.ndarray, i: int, start: int) -> Example:
        text = batch.column("completion")[i].as_py() or ""
        return Example(float(score[i]), start + i, batch.column("prompt_id")[i].as_py(), len(text),
                       text[:CUT_CHARS] if self.texts else "", self.path, start + i - self.file_start)

    def finish(self, files: list[Path], metadata: dict, total: int) -> ScoredColumns:
        c = self.columns
        sample = np.concatenate(self.sample_parts) if self.sample_parts else np.zeros(0, np.int64)
        wide = {k: np.concatenate(v) for k, v in self.wide.items()}
        return ScoredColumns(files, metadata, self.score_column, total, c["score"], c["usable"], c["chars"],
                             c["tokens"], c["groups"], c["steps"], self.status, self.non_finite, self.reasons,
                             sample, len(self.drawn), wide, self.highest, self.lowest)


def batch_rows(reader: pq.ParquetFile, columns: list[str]) -> int:
    """Rows per batch so that a batch holds about BATCH_BYTES of these columns (at most BATCH_ROWS).
    Big transient batches make the allocators keep more the longer a run goes: with 8,192-row
    batches of 20-2,000-character completions (~8 MiB), the page's text pass peaked ~55 MiB higher
    at 1M rows than with 2,048-row ones, and the 1M-row peak was ~35 MiB above the 100k one."""
    meta = reader.metadata
    size = sum(meta.row_group(g).column(c).total_uncompressed_size for g in range(meta.num_row_groups)
               for c in range(meta.num_columns)
               if meta.row_group(g).column(c).path_in_schema.split(".")[0] in columns)
    per_row = size / max(1, meta.num_rows)
    return int(min(BATCH_ROWS, max(64, BATCH_BYTES // max(1.0, per_row))))


def to_floats(array) -> np.ndarray:
    return pc.fill_null(pc.cast(array, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)


def to_ints(array) -> np.ndarray:
    """int32 (lengths, counts, codes), -1 where null."""
    return pc.fill_null(pc.cast(array, pa.int32()), -1).to_numpy(zero_copy_only=False)


def _matrix(lists: pa.Array) -> np.ndarray:
    """(rows, width) from a list column whose rows all have one width; rows of another width are NaN."""
    lengths = to_ints(pc.list_value_length(lists))
    width = int(np.bincount(lengths[lengths > 0]).argmax()) if (lengths > 0).any() else 0
    out = np.full((len(lists), width), np.nan)
    rows = np.flatnonzero(lengths == width)
    if width and len(rows):
        out[rows] = to_floats(pc.list_flatten(lists.take(pa.array(rows)))).reshape(len(rows), width)
    return out


def _last_user_turn(path: Path, row: int) -> str | None:
    """The prompt's last user message, for one row: reads one row group's prompt column."""
    reader = pq.ParquetFile(path)
    if "prompt" not in reader.schema_arrow.names:
        return None
    first = 0
    for group in range(reader.metadata.num_row_groups):
        size = reader.metadata.row_group(group).num_rows
        if row < first + size:
            messages = reader.read_row_group(group, columns=["prompt"]).column(0)[row - first].as_py() or []
            users = [m["content"] for m in messages if m.get("role") == "user"]
            return users[-1] if users else None
        first += size
    return None


def is_pairs_file(path: str | Path) -> bool:
    """A file written by build-pairs (its metadata says so, or it has the pair columns)."""
    path = Path(os.path.abspath(path))  # as given: no library may expand a literal "~" (pyarrow does)
    if not (path.is_file() and path.suffix == ".parquet"):
        return False
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    meta = json.loads((schema.metadata or {}).get(b"rmscore", b"{}"))
    if meta.get("kind") == "sft" or (meta.get("build_pairs") or {}).get("format") == "kto":
        what = "build-sft" if meta["kind"] == "sft" else "build-pairs --format kto"
        raise InputError(f"{path} was written by {what}, which inspect does not read",
                         "inspect the scored folder it was built from, or pairs built from it in another --format")
    return meta.get("kind") == "pairs" or {"chosen", "rejected", "score_chosen"} <= set(schema.names)

