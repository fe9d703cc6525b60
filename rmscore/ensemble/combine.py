"""`rmscore combine`: the scored folders of several reward models over one input -> one scored folder.

Flow: check that every folder's manifest records the same input -> (mean-z: each model's mean and
standard deviation over its usable rows, one streaming pass each) -> bucket every folder's rows by
prompt with the same buckets (pairs/buckets.py), so bucket b of each model holds the same rows ->
per bucket: check the row keys line up, combine (ensemble/methods.py), write one part. Memory is
one bucket per model.

The output is a scored folder as `rmscore score` writes it (the first model's prompt, completion,
side, num_tokens and kept columns), with `score` the combination, `model_scores` each model's own
score in argument order, and `status` ok only when every model's is ok (else the first other
status, its detail prefixed with the model). Parts hold the rows of one bucket each, in input
order. It is written into a temporary folder renamed when complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmscore import __version__
from rmscore.config import CombineConfig
from rmscore.distributed import completion
from rmscore.distributed.completion import META_DIR
from rmscore.ensemble.methods import Standard, combine
from rmscore.errors import ConfigError, InputError
from rmscore.pairs import buckets as scored_io
from rmscore.pairs.buckets import MODEL_SCORES
from rmscore.score.records import OK, SCORED_STATUSES
from rmscore.store.output import BASE_SCHEMA
from rmscore.store.resume import read_manifests

CARRIED = ("side", "num_tokens", "status_detail")  # beside build-pairs' columns, what a scored folder has
PROVENANCE = "combine.json"
STEM = "00000-of-00001"  # the output is one shard: part-00000-of-00001-{bucket:05d}.parquet


@dataclass
class CombineSummary:
    output: str
    provenance: dict  # what OUTPUT/.rmscore/combine.json holds
    wall_s: float


def run_combine(cfg: CombineConfig, log=print) -> CombineSummary:
    start = time.perf_counter()
    folders = [Path(p) for p in cfg.inputs]
    out = _check_output(Path(cfg.output), folders, cfg.overwrite)
    identity = same_input(folders)
    keep = tuple(next(iter(read_manifests(folders[0]).values()))["settings"].get("keep_columns", []))
    scored = [scored_io.open_scored([str(f)], cfg.score_column, command="combine",
                                    extra=CARRIED + (keep if m == 0 else ())) for m, f in enumerate(folders)]
    for f, s in zip(folders, scored):
        if s.combined:
            raise InputError(f"{f} is already the output of rmscore combine",
                             "combine the scored folders of the single models instead")
    labels = [s.metadata.get("model") or str(f) for f, s in zip(folders, scored)]
    standards = [_standard(s) for s in scored] if cfg.method == "mean-z" else []
    buckets = cfg.buckets or min(scored_io.MAX_BUCKETS,
                                 max(1, math.ceil(sum(s.nbytes for s in scored) / scored_io.BUCKET_BYTES)))
    log(f"combining {len(folders)} reward models ({cfg.method}) over {scored[0].rows:,} rows in {buckets} bucket(s)")
    meta = _metadata(cfg, scored, labels, standards, identity)
    counts = {"rows": 0, "usable": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-combine-{out.name}-", dir=out.parent) as tmp:
        staging = Path(tmp) / "out"
        (staging / META_DIR).mkdir(parents=True)
        spills = [scored_io.iter_buckets(s, buckets, Path(tmp) / f"spill-{m}", keep_empty=True)
                  for m, s in enumerate(scored)]
        for b, tables in enumerate(zip(*spills)):
            table = _combine_bucket(list(tables), cfg, scored[0].score_column, standards, labels, folders, meta)
            counts["rows"] += table.num_rows
            counts["usable"] += int(pc.sum(pc.is_valid(table["score"])).as_py() or 0)
            if table.num_rows:
                pq.write_table(table, staging / f"part-{STEM}-{b:05d}.parquet")
            del table, tables
            scored_io.release_memory()  # what this bucket freed: else it piles up over the buckets
        provenance = meta | counts
        (staging / META_DIR / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str))
        # One shard, finished: readers that check a folder's shards (store/scored.py) take it whole.
        completion.mark_done(staging, STEM, {"rows": counts["rows"], "combined": True})
        if out.exists():
            shutil.rmtree(out)  # _check_output allowed it: an earlier combine's folder, with --overwrite
        os.replace(staging, out)
    return CombineSummary(str(out), provenance, time.perf_counter() - start)


def _check_output(out: Path, folders: list[Path], overwrite: bool) -> Path:
    """A new or empty folder; an earlier combine's only with --overwrite; never anything else."""
    if any(out.resolve() == f.resolve() for f in folders):
        raise ConfigError(f"-o {out} is one of the inputs", "write the ensemble to a new folder")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    if not (out / META_DIR / PROVENANCE).is_file():
        raise ConfigError(f"{out} exists and is not a folder written by rmscore combine", "choose a new -o folder")
    if not overwrite:
        raise ConfigError(f"{out} holds an earlier combine", "pass --overwrite to replace it, or choose another -o")
    return out


def input_identity(folder: Path) -> dict:
    """What a scored folder's manifest says about its input: the files' names, sizes and first-64-KiB
    digests (where it was read from and when does not matter), or a Hub dataset's name; and which
    split, config, columns and reading rules made the rows."""
    manifests = read_manifests(folder) if folder.is_dir() else {}
    if not manifests:
        raise InputError(f"{folder} has no rmscore manifest (.rmscore/manifest-*.json): which input it scored "
                         "is unknown", "combine the folders written by rmscore score -o (not merged files)")
    manifest = next(iter(manifests.values()))
    settings, stamp = manifest["settings"], manifest.get("input_stamp")
    files = [[Path(f[0]).name, f[1], f[3]] for f in stamp["files"]] if stamp else None
    return {"input": None if files else settings["input"], "files": files} | {
        k: settings.get(k) for k in ("split", "config", "columns", "json_columns", "input_contract")}


def same_input(folders: list[Path]) -> dict:
    first = input_identity(folders[0])
    for folder in folders[1:]:
        other = input_identity(folder)
        diffs = [_difference(k, first[k], other[k]) for k in first if first[k] != other[k]]
        if diffs:
            raise InputError(f"{folders[0]} and {folder} scored different inputs: {'; '.join(diffs)[:300]}",
                             "combine folders that rmscore score wrote from the same input file and column options")
    return first


def _difference(key: str, a, b) -> str:
    if key != "files" or not a or not b or len(a) != len(b):
        return f"{key} {a!r} vs {b!r}"
    return ", ".join(f"{x[0]} {x[1]:,} bytes vs {y[1]:,}" if x[1] != y[1] else
                     f"{x[0]} vs {y[0]}" if x[0] != y[0] else f"{x[0]}'s first 64 KiB differ"
                     for x, y in zip(a, b) if x != y)


def _standard(scored: scored_io.ScoredInput) -> Standard:
    st = Standard()
    batches = scored_io.scan(scored_io.dataset(scored), {"s": scored.projection[scored.score_column]},
                             scored_io.usable_rows(scored), batch_size=65536)  # bounded read-ahead
    for batch in batches:
        st.add(batch.column("s").to_numpy(zero_copy_only=False).astype(np.float64))
    return st


def _combine_bucket(tables: list[pa.Table], cfg: CombineConfig, column: str, standards: list[Standard],
                    labels: list[str], folders: list[Path], meta: dict) -> pa.Table:
    order = [("input_index", "ascending"), ("completion_index", "ascending")]
    tables = [t.sort_by([("prompt_id", "ascending")] + order) for t in tables]
    _check_aligned(tables, folders)
    first = tables[0]
    scores = np.column_stack([pc.fill_null(t[column].cast(pa.float64()), math.nan).to_numpy() for t in tables])
    scored = np.column_stack([pc.is_in(t["status"], pa.array(SCORED_STATUSES)).to_numpy(zero_copy_only=False)
                              for t in tables])
    usable = (scored.all(axis=1) & np.isfinite(scores).all(axis=1)
              & pc.is_valid(first["prompt_id"]).to_numpy(zero_copy_only=False))
    groups = pc.fill_null(first["prompt_id"].combine_chunks().dictionary_encode().indices, -1).to_numpy()
    combined = combine(cfg.method, scores, usable, groups, standards)  # (rows,)
    status, detail = _status(tables, labels)
    values = pa.array(scores.ravel(), mask=np.isnan(scores.ravel()))
    per_model = pa.ListArray.from_arrays(pa.array(np.arange(0, scores.size + 1, scores.shape[1]), pa.int32()), values)
    names = [f.name for f in BASE_SCHEMA] + [n for n in first.column_names if n not in BASE_SCHEMA.names]
    columns = {n: first[n] for n in names if n in first.column_names}
    columns |= {"score": pa.array(combined, mask=np.isnan(combined)), "status": status, "status_detail": detail,
                MODEL_SCORES: per_model}
    table = pa.table(columns).select([n for n in names if n in columns] + [MODEL_SCORES])
    return table.replace_schema_metadata({"rmscore": json.dumps(meta)}).sort_by(order)


def _check_aligned(tables: list[pa.Table], folders: list[Path]) -> None:
    keys = ("prompt_id", "input_index", "completion_index")
    for table, folder in zip(tables[1:], folders[1:]):
        if table.num_rows == tables[0].num_rows and all(table[k].equals(tables[0][k]) for k in keys):
            continue
        a, b = ({tuple(r.values()) for r in t.select(keys).to_pylist()} for t in (tables[0], table))
        only = sorted(a - b, key=str)[:1] or sorted(b - a, key=str)[:1] or [None]
        where = folders[0] if only[0] in a else folder
        raise InputError(f"{folders[0]} and {folder} hold different rows (row {only[0]} only in {where})",
                         "combine complete scorings of the same input: rerun rmscore score on the one missing rows "
                         "(it resumes), or check rmscore merge on each folder")


def _status(tables: list[pa.Table], labels: list[str]) -> tuple[pa.Array, pa.Array]:
    """ok where every model says ok; else the first model's other status, with its detail."""
    status = np.full(tables[0].num_rows, OK, dtype=object)
    detail = np.full(tables[0].num_rows, None, dtype=object)
    for table, label in reversed(list(zip(tables, labels))):  # the first model's status is set last
        s = np.array(table["status"].to_pylist(), dtype=object)
        d = table["status_detail"].to_pylist()
        other = s != OK
        status[other] = s[other]
        detail[other] = [f"{label}: {d[i]}" if d[i] else label for i in np.flatnonzero(other)]
    return pa.array(status.tolist(), pa.string()), pa.array(detail.tolist(), pa.string())


def _metadata(cfg: CombineConfig, scored: list, labels: list[str], standards: list[Standard], identity: dict) -> dict:
    first = scored[0].metadata
    return {
        "kind": "combined",
        "rmscore_version": __version__,
        "model": f"{cfg.method} of {len(labels)} reward models: {' + '.join(labels)}",
        "model_type": "ensemble",
        "models": labels,
        "combine": {"method": cfg.method, "score_column": cfg.score_column,
                    "standardised_by": [st.as_dict() for st in standards] or None},
        "input": first.get("input"),
        "input_identity": identity,
        "scorings": [s.metadata for s in scored],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
