"""`rmscore build-pairs`: scored Parquet in; one pairs Parquet file and its drop report out.

Flow: open and check the scored files -> bucket the rows by prompt (pairs/buckets.py) -> for each
prompt, select_pairs (pairs/select.py) -> rows in the chosen format (pairs/formats.py) -> one file.

Output order is the input order of prompts (a prompt's place is its first row), then the pair's
rank within the prompt. It does not depend on the bucket count: each bucket's pairs are sorted by
that key and the buckets are merged. The file is written under a temporary name and renamed when
complete; the report is written after it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmscore import __version__
from rmscore.config import PairConfig
from rmscore.errors import ConfigError
from rmscore.pairs import buckets as scored_io
from rmscore.pairs.formats import kto_rows, pair_row, pairs_schema
from rmscore.pairs.select import DropReport, select_pairs

ORDER = [("_first_input", pa.int64()), ("_first_completion", pa.int32()), ("_rank", pa.int32())]
ORDER_KEY = ["_first_input", "_first_completion", "prompt_id", "_rank"]
WRITE_ROWS = 4096
# Bytes of pair rows the merge of the bucket parts holds, all parts together (a row group of each).
# In bytes, not rows: a pair row holds a prompt and two completions, often several KiB.
MERGE_BYTES = 16 * 2**20
MERGE_MIN_ROWS = 16


@dataclass
class BuildSummary:
    output: str
    report_path: str
    report: dict  # what the .report.json holds
    format: str
    buckets: int
    wall_s: float


def report_path(output: Path) -> Path:
    return output.with_suffix(".report.json")


def run_build_pairs(cfg: PairConfig, log=print) -> BuildSummary:
    start = time.perf_counter()
    out = check_output(cfg.output, cfg.overwrite)
    scored = scored_io.open_scored(cfg.inputs, cfg.score_column, cfg.allow_mixed_models, cfg.allow_partial)
    if scored.models:
        log(f"pairing the scores of {len(scored.models)} reward models (--allow-mixed-models): "
            f"{'; '.join(scored.models)}")
    if out.resolve() in scored.files:
        raise ConfigError(f"-o {out} is one of the inputs", "write the pairs to another file")
    if cfg.min_agreement is not None and not scored.combined:
        raise ConfigError("--min-agreement needs the output of rmscore combine (its rows have model_scores)",
                          "combine the scored folders of several reward models first: rmscore combine A B -o ENSEMBLE")
    fmt = cfg.format if cfg.format != "auto" else _detect_format(scored)
    buckets = scored_io.bucket_count(scored, cfg.buckets)
    log(f"reading {len(scored.files)} scored file(s), {scored.nbytes / 2**20:,.1f} MiB of needed columns, "
        f"in {buckets} bucket(s); rule {cfg.rule}, format {fmt}, score column {cfg.score_column}")
    report = DropReport()
    schema = pairs_schema(fmt, scored.combined)
    rows = 0

    def table(bucket: pa.Table) -> pa.Table:
        nonlocal rows
        found = _pairs_table(bucket, cfg, fmt, schema, report)
        rows += found.num_rows
        return found

    schema = schema.with_metadata({"rmscore": json.dumps(_metadata(cfg, fmt, scored))})
    with tempfile.TemporaryDirectory(prefix=".tmp-build-pairs-", dir=out.parent) as tmp:
        tables = scored_io.iter_buckets(scored, buckets, Path(tmp) / "spill")
        pairs = (table(t) for t in tables)
        write_sorted(progress(pairs, buckets, lambda: f"{report.prompts['in']:,} prompts, {report.pairs:,} pairs", log),
                     out, schema, Path(tmp), buckets)
    content = report.as_dict() | {"output": str(out), "inputs": [str(f) for f in scored.files],
                                  "settings": _settings(cfg, fmt), "scoring": scored.metadata}
    if fmt == "kto":
        content["rows"] = rows  # 2 per pair, less a completion in several pairs with the same label
    path = report_path(out)
    path.write_text(json.dumps(content, indent=2, default=str))
    return BuildSummary(str(out), str(path), content, fmt, buckets, time.perf_counter() - start)


def progress(tables: Iterator[pa.Table], buckets: int, so_far, log, every_s: float = 30.0) -> Iterator[pa.Table]:
    """A log line at most every `every_s` seconds while buckets are processed; so_far() says what was done."""
    last = time.perf_counter()
    for i, table in enumerate(tables, 1):
        if buckets > 1 and time.perf_counter() - last >= every_s:
            last = time.perf_counter()
            log(f"bucket {i}/{buckets}: {so_far()} so far")
        yield table


def check_output(output: str, overwrite: bool, option: str = "-o", example: str = "pairs.parquet") -> Path:
    out = Path(os.path.abspath(output))  # as given: no library may expand a literal "~" (pyarrow does)
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a folder", f"{option} names a Parquet file, e.g. {example}")
    for path in (out, report_path(out)):  # the drop report goes beside the output: never over a user's file
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} already exists", f"pass --overwrite to replace it, or choose another {option}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _detect_format(scored: scored_io.ScoredInput) -> str:
    """conversational, unless every prompt was given as plain text."""
    messages = (pc.field("prompt_is_text") == False) & pc.field("prompt_id").is_valid()  # noqa: E712
    return "conversational" if scored_io.dataset(scored).count_rows(filter=messages) else "standard"


def _pairs_table(table: pa.Table, cfg: PairConfig, fmt: str, schema: pa.Schema, report: DropReport) -> pa.Table:
    table = scored_io.sort_by_prompt(table)
    found = []  # (prompt_id, the prompt's first key, rank, pair, all scored completions if needed)
    for prompt_id, completions in scored_io.iter_groups(table, cfg.score_column):
        if prompt_id is None:
            report.add_without_prompt([c.status for c in completions])
            continue
        sel = select_pairs(prompt_id, completions, cfg)
        report.add(sel)
        first = min(c.key for c in completions)  # the prompt's place in the input
        scored = sel.scored if fmt == "simpo" else None  # only SimPO lists them all
        found += [(prompt_id, first, rank, pair, scored) for rank, pair in enumerate(sel.pairs)]
    # The prompts of all pairs in one Arrow take, rather than one conversion per pair.
    prompts = table.column("prompt").take(pa.array([f[3].chosen.row for f in found], pa.int64())).to_pylist()
    if fmt == "kto":
        rows = _kto(found, prompts)
    else:
        rows = [pair_row(fmt, prompt_id, prompt, pair, scored)
                | {"_first_input": first[0], "_first_completion": first[1], "_rank": rank}
                for (prompt_id, first, rank, pair, scored), prompt in zip(found, prompts)]
    schema = pa.schema(list(schema) + [pa.field(n, t) for n, t in ORDER])
    return pa.Table.from_pylist(rows, schema=schema).sort_by([(k, "ascending") for k in ORDER_KEY])


def _kto(found: list[tuple], prompts: list) -> list[dict]:
    """Two unpaired rows per pair; a completion already given with the same label (the best of
    best-vs-rest) is not repeated."""
    rows, seen = [], set()
    for (prompt_id, first, rank, pair, _), prompt in zip(found, prompts):
        for i, row in enumerate(kto_rows(prompt_id, prompt, pair)):
            completion = pair.rejected if i else pair.chosen
            if (prompt_id, completion.order, row["label"]) not in seen:
                seen.add((prompt_id, completion.order, row["label"]))
                rows.append(row | {"_first_input": first[0], "_first_completion": first[1], "_rank": 2 * rank + i})
    return rows


def write_sorted(tables: Iterator[pa.Table], out: Path, schema: pa.Schema, tmp: Path, buckets: int) -> None:
    # The merge reads every part at once, a row group at a time: groups of MERGE_BYTES / K keep it
    # to about MERGE_BYTES of rows, whatever the number of parts (a part written as one group, the
    # default, had every pair of the run in memory during the merge).
    parts = []
    for i, table in enumerate(tables):
        parts.append(tmp / f"pairs-{i:05d}.parquet")
        pq.write_table(table, parts[-1], row_group_size=merge_group_rows(table, buckets))
    staging = out.parent / f".tmp-{out.name}"
    with pq.ParquetWriter(staging, schema, compression="zstd") as writer:
        for table in _merged(parts):
            writer.write_table(table.select(schema.names).cast(schema))
    os.replace(staging, out)  # atomic: a reader sees the old file or the whole new one


def merge_group_rows(table: pa.Table, buckets: int) -> int:
    """Rows per row group of a bucket's sorted part, so that one group of each of K parts holds MERGE_BYTES."""
    row_bytes = max(1, table.nbytes // max(1, table.num_rows))
    return max(MERGE_MIN_ROWS, MERGE_BYTES // (max(1, buckets) * row_bytes))


def _merged(parts: list[Path]) -> Iterator[pa.Table]:
    """The rows of the sorted part files, in one sorted stream, merged in Arrow a batch at a time.

    Each part is sorted by ORDER_KEY. The frontier is the smallest "last prompt position"
    (_first_input, _first_completion) among the parts still being read: a row before it can be
    written, since no part can still hold a smaller one; rows at it wait for the next batch of the
    part(s) it came from (a prompt's pairs can straddle two batches). Rows never become Python
    objects: converting every pair to dicts for a heap merge held 10x the working set at 1M rows."""
    held = [_Held(_batches(path)) for path in parts]
    waiting: list[pa.Table] = []  # merged rows not yet handed out, in order
    while True:
        for part in held:  # a part still being read must show a row before the frontier is known
            while part.live and not part.rows:
                part.pull()
        live = [part for part in held if part.live]
        if not live:  # every part read: what is held is all that is left
            if waiting:
                yield pa.concat_tables(waiting)
            rest = [part.table for part in held if part.rows]
            if rest:
                yield from _in_order(pa.concat_tables(rest))
            return
        frontier = min(part.last for part in live)
        taken = [t for part in held if part.rows and (t := part.take_before(frontier)) is not None]
        for part in live:
            if part.rows and part.last == frontier:  # all it holds is at the frontier: read on
                part.pull()
        if taken:
            # Sorted, so a copy: a slice would keep the parts' whole batches alive until written.
            waiting.append(_sort(pa.concat_tables(taken)))
            if sum(t.num_rows for t in waiting) >= WRITE_ROWS:  # row groups of a useful size
                yield pa.concat_tables(waiting)
                waiting = []


class _Held:
    """What the merge holds of one sorted part: its rows not yet written, and their positions."""

    def __init__(self, batches: Iterator[pa.Table]):
        self.batches, self.live, self.table = batches, True, None
        self.first, self.completion = np.empty(0, np.int64), np.empty(0, np.int64)

    @property
    def rows(self) -> int:
        return len(self.first)

    @property
    def last(self) -> tuple[int, int]:  # sorted: the last row has the largest position
        return int(self.first[-1]), int(self.completion[-1])

    def pull(self) -> None:
        """Append the part's next batch; a finished part is no longer live."""
        batch = next(self.batches, None)
        if batch is None:
            self.live = False
            return
        self.table = batch if not self.rows else pa.concat_tables([self.table, batch])
        self.first, self.completion = (self.table[name].to_numpy() for name in ("_first_input", "_first_completion"))

    def take_before(self, position: tuple[int, int]) -> pa.Table | None:
        """Remove and return the rows before `position` (a prefix: the rows are sorted)."""
        low, high = np.searchsorted(self.first, position[0], "left"), np.searchsorted(self.first, position[0], "right")
        n = int(low + np.searchsorted(self.completion[low:high], position[1], "left"))
        if not n:
            return None
        taken, self.table = self.table.slice(0, n), self.table.slice(n)
        self.first, self.completion = self.first[n:], self.completion[n:]
        return taken


def _batches(path: Path) -> Iterator[pa.Table]:
    """One row group at a time (write_sorted sized them)."""
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield file.read_row_group(group)


def _sort(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in ORDER_KEY])


def _in_order(table: pa.Table) -> Iterator[pa.Table]:
    table = _sort(table)
    for start in range(0, table.num_rows, WRITE_ROWS):
        yield table.slice(start, WRITE_ROWS)


def _settings(cfg: PairConfig, fmt: str) -> dict:
    settings = asdict(cfg) | {"format": fmt}
    # the pairs do not depend on them
    for name in ("inputs", "output", "overwrite", "buckets", "allow_mixed_models", "allow_partial"):
        settings.pop(name)
    return settings


def _metadata(cfg: PairConfig, fmt: str, scored: scored_io.ScoredInput) -> dict:
    return {
        "kind": "pairs",
        "rmscore_version": __version__,
        "model": scored.metadata.get("model"),
        "build_pairs": _settings(cfg, fmt),
        "scoring": scored.metadata,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
