"""Completion markers: `OUTPUT/.rmscore/done-{shard}-of-{count}.json`, written last by a shard.

A marker means every input row of that shard is in a finished part. `rmscore merge` refuses to
run until every shard of the folder has one. This module never writes data files.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from rmscore.errors import InputError

META_DIR = ".rmscore"  # hidden: pyarrow.dataset and datasets.load_dataset both skip it
STEM = re.compile(r"(\d+)-of-(\d+)")


def done_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / META_DIR / f"done-{stem}.json"


def mark_done(out_dir: Path, stem: str, info: dict) -> None:
    path = done_path(out_dir, stem)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps({**info, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    os.replace(tmp, path)


def undo(out_dir: Path, stem: str) -> None:
    done_path(out_dir, stem).unlink(missing_ok=True)


def is_done(out_dir: Path, stem: str, limit: int | None) -> bool:
    """True when this shard already finished with the same --limit. A marker left by a run with
    another limit is removed: the rows it did not cover are about to be scored."""
    path = done_path(out_dir, stem)
    if not path.is_file():
        return False
    if json.loads(path.read_text()).get("limit") == limit:
        return True
    undo(out_dir, stem)
    return False


def shard_counts(out_dir: Path) -> set[int]:
    """Shard counts named by the manifests, markers and parts in the folder (one, normally)."""
    names = [p.name for p in Path(out_dir).glob("part-*.parquet")]
    meta = Path(out_dir) / META_DIR
    names += [p.name for p in meta.glob("*.json")] if meta.is_dir() else []
    return {int(m.group(2)) for m in map(STEM.search, names) if m}


def missing_shards(out_dir: Path) -> tuple[int, list[int]]:
    """(shard count, indices of the shards without a completion marker)."""
    counts = shard_counts(out_dir)
    if not counts:
        raise InputError(f"{out_dir} holds no rmscore output", "give the -o folder of `rmscore score`")
    if len(counts) > 1:
        raise InputError(
            f"{out_dir} mixes runs with different shard counts ({', '.join(map(str, sorted(counts)))})",
            "rerun every shard with the same count and --overwrite, or score into a fresh folder",
        )
    count = counts.pop()
    return count, [i for i in range(count) if not done_path(out_dir, f"{i:05d}-of-{count:05d}").is_file()]


def limits(out_dir: Path, count: int) -> list[int | None]:
    """The --limit each finished shard read (None: the whole input), from its marker."""
    return [json.loads(done_path(out_dir, f"{i:05d}-of-{count:05d}").read_text()).get("limit") for i in range(count)]
