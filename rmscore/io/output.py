"""The scored-output folder: its schema, its provenance metadata, its part files and stats.

Layout of OUTPUT/:
  part-{shard:05d}-of-{count:05d}-{seq:05d}.parquet   scored rows (read with pyarrow.dataset or
                                                       datasets.load_dataset("parquet", ...))
  .rmscore/stats-{shard}-of-{count}.json               what the run did (ignored by readers)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa

from rmscore import __version__
from rmscore.errors import ConfigError, ResumeConflict
from rmscore.io.writers import PartWriter, existing_parts

META_DIR = ".rmscore"  # hidden: pyarrow.dataset and datasets.load_dataset both skip it
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


def prepare(out_dir: Path, overwrite: bool) -> Path:
    """Check the output folder before the model loads; clear it only when --overwrite says so."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output {out_dir} exists and is a file", "-o names a folder of Parquet parts")
    if existing_parts(out_dir):
        if not overwrite:
            raise ResumeConflict(
                f"{out_dir} already holds scored parts",
                "pass --overwrite to replace them, or choose another -o",
            )
        for path in out_dir.glob("*part-*.parquet"):
            path.unlink()
        shutil.rmtree(out_dir / META_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def shard_stem(dist) -> str:
    return f"{dist.shard_index:05d}-of-{dist.shard_count:05d}"


class ScoreSink:
    """Turns scored row dicts into Parquet parts with a fixed schema."""

    def __init__(self, out_dir: Path, model, cfg, dist, max_length: int, family: str):
        self.out_dir, self.dist, self.cfg = out_dir, dist, cfg
        self.model_fields = model.output_fields()
        self.metadata = provenance(model, cfg, max_length, family)
        self.stem = shard_stem(dist)
        self.schema: pa.Schema | None = None  # fixed at the first window (kept columns' types)
        self.writer: PartWriter | None = None

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.schema is None:
            self.schema = self._schema(rows)
            self.writer = PartWriter(self.out_dir, self.schema, self.stem, self.cfg.output.rows_per_part)
        self.writer.write(pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def write_stats(self, summary) -> Path:
        path = self.out_dir / META_DIR / f"stats-{self.stem}.json"
        path.parent.mkdir(exist_ok=True)
        # asdict() would rebuild the Counters from (key, value) tuples; copy them as plain dicts
        stats = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(summary).items()}
        stats |= {"samples": summary.samples, "padding_efficiency": summary.padding_efficiency}
        path.write_text(json.dumps(stats, indent=2, default=str))
        return path

    def _schema(self, rows: list[dict]) -> pa.Schema:
        fields = list(BASE_SCHEMA) + list(self.model_fields)
        for name in self.cfg.input.keep_columns:
            if name in {f.name for f in fields}:
                raise ConfigError(f"--keep-columns {name!r} clashes with an output column", "rename it in the input")
            kind = pa.array([r.get(name) for r in rows]).type
            fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
        meta = {"rmscore": json.dumps(self.metadata)}
        return pa.schema(fields, metadata=meta)


def provenance(model, cfg, max_length: int, family: str) -> dict:
    """Everything that changes the numbers, so a scored file says how it was made."""
    param = next(model.backbone.parameters())
    return {
        "rmscore_version": __version__,
        "model": cfg.model.path,
        "revision": cfg.model.revision,
        "model_type": family,
        "dtype": str(param.dtype).replace("torch.", ""),
        "max_length": max_length,
        "on_overflow": cfg.batch.on_overflow,
        "system_prompt": cfg.model.system_prompt,
        "input": cfg.input.path,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **model.metadata(),
    }


def read_metadata(path: Path) -> dict:
    """The provenance block of a scored part file or folder."""
    import pyarrow.parquet as pq

    files = existing_parts(path) if Path(path).is_dir() else [Path(path)]
    if not files:
        return {}
    raw = pq.read_schema(files[0]).metadata or {}
    return json.loads(raw.get(b"rmscore", b"{}"))
