"""The folder `rmscore eval` caches scores in: used only when it is new, empty, or an eval cache,
and emptied only of what rmscore wrote there.

An eval cache is an ordinary `rmscore score` folder (part-*.parquet and .rmscore/) whose
.rmscore/eval-key.json says which data, model and settings made it, and what the folder held when
it was made (`contents`). It is trusted only while it still holds exactly that: `score
--overwrite` into it sets the key aside, and any other change to its parts or manifests makes it
score again. Anything else in the folder is the user's: the folder is then refused, never cleared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rmscore.distributed import completion
from rmscore.errors import ConfigError, ResumeConflict
from rmscore.store.output import EVAL_KEY, META_DIR
from rmscore.store.resume import read_manifests
from rmscore.store.writers import existing_parts

KEY_FILE = EVAL_KEY
HINT = "give --cache-dir a new or empty folder (the default is OUTPUT/scores)"


def key_path(cache: Path) -> Path:
    return cache / META_DIR / KEY_FILE


def contents(cache: Path) -> dict:
    """What the cache holds: each shard's input stamp, finished parts (rows and row digest) and
    completion marker, and each part file's size and modification time."""
    shards = {stem: {"input_stamp": m.get("input_stamp"), "done": completion.done_path(cache, stem).is_file(),
                     "parts": [[rec["file"], rec["rows"], rec.get("digest")] for rec in m.get("parts", [])]}
              for stem, m in read_manifests(cache).items()}
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in existing_parts(cache)}
    return {"shards": shards, "files": files}


def _ours(name: str) -> bool:
    return name == META_DIR or (name.startswith(("part-", ".tmp-part-")) and name.endswith(".parquet"))


def claim(cache: Path) -> list[Path]:
    """Make `cache` ready to score into, and return the folders this call created (deepest last).
    Raises if it holds anything rmscore eval did not write."""
    if cache.exists() and not cache.is_dir():
        raise ConfigError(f"--cache-dir {cache} is a file", HINT)
    created = [p for p in [cache, *cache.parents] if not p.exists()][::-1]
    cache.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in cache.iterdir())
    if not names:
        return created
    if not key_path(cache).is_file():
        raise ResumeConflict(f"{cache} is not an rmscore eval cache: it holds {_list(names)}", HINT)
    foreign = [n for n in names if not _ours(n)]
    if foreign:
        raise ResumeConflict(f"the eval cache {cache} also holds {_list(foreign)}, which no eval cache holds",
                             f"move them out, or {HINT}")
    clear(cache)
    return created


def clear(cache: Path) -> None:
    """Remove what rmscore wrote in the cache (parts and .rmscore/), nothing else."""
    for path in cache.iterdir():
        if path.name == META_DIR:
            shutil.rmtree(path)
        elif _ours(path.name):
            path.unlink()


def release(cache: Path, created: list[Path]) -> None:
    """After a failed eval: remove what it wrote (a rerun scores from the start anyway) and the
    folders it created, so no empty folder is left behind."""
    if cache.is_dir():
        clear(cache)
    for folder in reversed(created):
        try:
            folder.rmdir()  # only if empty: never anything else's
        except OSError:
            return


def _list(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
