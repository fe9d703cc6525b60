"""The scored-output folder: its schema, its provenance metadata, its part files and stats.

Layout of OUTPUT/:
  part-{shard:05d}-of-{count:05d}-{seq:05d}.parquet   scored rows (read with pyarrow.dataset or
                                                       datasets.load_dataset("parquet", ...))
  .rmscore/manifest-{shard}-of-{count}.json            settings and finished parts (rmscore/store/resume.py)
  .rmscore/stats-{shard}-of-{count}.json               what the last run of the shard did
  .rmscore/done-{shard}-of-{count}.json                the shard finished (distributed/completion.py)
  .rmscore/locks/                                      who writes each shard; the folder's lock (store/lock.py)
  .rmscore/eval-key.json                               an eval cache's key (evaluate/cache.py)
Every part has the same schema once every shard is done (rmscore/store/conform.py).
The .rmscore folder is hidden, so readers of the folder see the parts only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from rmscore import __version__
from rmscore.distributed.completion import META_DIR
from rmscore.errors import ConfigError
from rmscore.read import promote
from rmscore.score.batching import INVARIANT_SCHEME
from rmscore.store import fingerprint
from rmscore.store.writers import PartWriter, existing_parts

EVAL_KEY = "eval-key.json"  # in META_DIR: set aside (never reused) by `score --overwrite`
# Schema metadata of a part holding an arbitrary set of keys (the finished rows of a window cut
# short), not a contiguous run of the shard's rows: resume and merge treat it apart.
EXACT_KEYS = b"rmscore_exact_keys"
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
BASE_SCHEMA = pa.schema(
    [
        ("input_index", pa.int64()),
        ("completion_index", pa.int32()),
        ("prompt_id", pa.string()),
        ("side", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("prompt_is_text", pa.bool_()),
        ("completion", pa.string()),
        ("score", pa.float64()),
        ("num_tokens", pa.int32()),
        ("status", pa.string()),
        ("status_detail", pa.string()),
    ]
)


class ScoreSink:
    """Turns scored row dicts into Parquet parts with a fixed schema; tells the shard's resume
    state (rmscore/store/resume.py) about every finished part."""

    def __init__(self, out_dir: Path, facts, cfg, state):
        """facts: the model's ModelFacts (rmscore/score/compute.py), wherever it was loaded."""
        self.out_dir, self.cfg, self.state = out_dir, cfg, state
        self.model_fields = facts.output_fields
        self.metadata = provenance(facts, cfg)
        self.stem = state.stem
        self.schema: pa.Schema | None = None  # kept columns' types widen as windows come
        self.writer: PartWriter | None = None

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        self._widen(rows)
        cuts = self.state.split([(r["input_index"], r["completion_index"]) for r in rows])
        bounds = [0, *cuts, len(rows)]
        for segment, (start, end) in enumerate(zip(bounds, bounds[1:])):
            if segment:
                self.writer.finish_part()  # a finished part's range lies between: never overlap it
            if end > start:
                self.writer.write(self._table(rows[start:end]))
        if self.writer.part_age >= 60 * self.cfg.output.part_minutes:
            self.writer.finish_part()  # bounds what a SIGKILL can take in time, not only in rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def salvage(self, rows: list[dict]) -> None:
        """After a stop or a failure: close the part with the finished windows, then save `rows` (the
        finished rows of the window in flight, not a contiguous run of keys) as a part of their own
        marked EXACT_KEYS, whose keys resume reads back one by one. Nothing is written if a write
        already failed."""
        if self.writer is not None and self.writer.broken:
            return
        self.close()
        if rows:
            self._widen(rows)
            meta = {**self.schema.metadata, EXACT_KEYS: b"1"}
            self.writer.write_whole(self._table(rows).replace_schema_metadata(meta))

    def _widen(self, rows: list[dict]) -> None:
        """Fix the schema for these rows: kept columns take the promoted type of everything seen so
        far (rmscore/read/promote.py). A wider type closes the part: a Parquet file has one schema."""
        schema = self.schema if self.schema is not None else self._first_schema()
        for name in self.cfg.input.keep_columns:
            kind = promote.widen(schema.field(name).type, [r.get(name) for r in rows])
            schema = schema.set(schema.get_field_index(name), pa.field(name, kind))
        if self.writer is None:
            self.writer = PartWriter(self.out_dir, schema, self.stem, self.cfg.output.rows_per_part,
                                     self.state.next_seq, on_finish=self.state.record, check=self.state.guard)
        elif not schema.equals(self.schema):
            self.writer.finish_part()
            self.writer.schema = schema
        self.schema = schema

    def _table(self, rows: list[dict]) -> pa.Table:
        for name in self.cfg.input.keep_columns:
            values = promote.fit_values([r.get(name) for r in rows], self.schema.field(name).type)
            for row, value in zip(rows, values):
                row[name] = value
        return pa.Table.from_pylist(rows, schema=self.schema)

    def _first_schema(self) -> pa.Schema:
        meta = {"rmscore": json.dumps(self.metadata)}
        if self.state.schema is not None:  # resuming: the widest types of the shard's finished parts
            return self.state.schema.with_metadata(meta)
        fields = list(BASE_SCHEMA) + list(self.model_fields)
        check_keep_columns(self.cfg.input.keep_columns, [f.name for f in fields])
        fields += [pa.field(name, pa.null()) for name in self.cfg.input.keep_columns]  # null fits anything
        return pa.schema(fields, metadata=meta)


def check_keep_columns(keep: list[str], columns: list[str]) -> None:
    for name in keep:
        if name in columns:
            raise ConfigError(f"--keep-columns {name!r} clashes with an output column", "rename it in the input")


def write_stats(out_dir: Path, stem: str, summary) -> Path:
    """What the last run of this shard did (one file per shard, for a later look or merge)."""
    path = out_dir / META_DIR / f"stats-{stem}.json"
    path.parent.mkdir(exist_ok=True)
    # asdict() would rebuild the Counters from (key, value) tuples; copy them as plain dicts
    stats = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(summary).items()}
    stats |= {"samples": summary.samples, "padding_efficiency": summary.padding_efficiency}
    path.write_text(json.dumps(stats, indent=2, default=str))
    return path


def provenance(facts, cfg) -> dict:
    """Everything that changes the numbers, so a scored file says how it was made. facts: the
    model's ModelFacts (rmscore/score/compute.py)."""
    return {
        "rmscore_version": __version__,
        "model": cfg.model.checkpoint,
        "revision": cfg.model.revision,
        "gguf_file": cfg.model.gguf_file,
        "model_type": facts.family,
        "dtype": facts.dtype,  # None: served elsewhere
        "max_length": facts.max_length,
        "on_overflow": cfg.batch.on_overflow,
        # --batch-invariant's rule, or None: then a row's last bits may differ with its batch
        "batch_invariant": INVARIANT_SCHEME if cfg.batch.batch_invariant else None,
        "system_prompt": cfg.model.system_prompt,
        "input": cfg.input.path,
        **fingerprint.model_identity(cfg.model.path, cfg.model.revision),  # what build-pairs and resume compare
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **facts.metadata,
    }


def read_metadata(path: Path) -> dict:
    """The provenance block of a scored part file or folder."""
    import pyarrow.parquet as pq

    files = existing_parts(path) if Path(path).is_dir() else [Path(path)]
    if not files:
        return {}
    raw = pq.read_schema(files[0]).metadata or {}
    return json.loads(raw.get(b"rmscore", b"{}"))
