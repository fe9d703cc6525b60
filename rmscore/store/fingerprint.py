"""Content fingerprints of inputs and model checkpoints: whether cached or recorded results still
belong to the files they were made from.

- An input (the eval cache key): every file a source can read (the file, or every non-hidden file
  below a folder), by resolved path, size and a SHA-256 of its whole content. Times do not enter:
  an edit that keeps the size within one mtime tick is still seen, and a `touch` rescores nothing.
- A model (the provenance of scored output, which build-pairs, resume and the eval cache compare):
  the files of the checkpoint folder that decide the scores, by name, size and content digest:
  whole up to 64 MiB (config, tokenizer, template, small weights); beyond that, 64 evenly spaced
  256 KiB blocks and the last one. Hashing every byte of many GB of weights would cost more than a
  short scoring run; any full fine-tune or retraining changes every block. No path or time enters
  it, so a copy of a checkpoint is the same model and two checkpoints called `rm` are not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FULL_DIGEST_BYTES = 64 * 2**20
BLOCK_BYTES = 256 * 2**10
BLOCKS = 64
# Files in a checkpoint folder that never change a score (model cards, pictures, git metadata).
NOT_MODEL = (".md", ".png", ".jpg", ".jpeg", ".gif", ".pdf", ".gitattributes", ".gitignore")


def data_files(path: str | Path) -> list[Path]:
    """The files an input path can be read from, sorted; [] for a Hub dataset name. Hidden names
    (".rmscore/", ".tmp-part-*", "_SUCCESS") are skipped, as the readers skip them."""
    p = Path(path)
    if p.is_file():
        return [p.resolve()]
    if not p.is_dir():
        return []
    root = p.resolve()
    return sorted(f for f in root.rglob("*") if f.is_file() and not _hidden(f.relative_to(root)))


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def file_digest(path: Path, sampled: bool = False) -> str:
    """SHA-256 of the whole file, or with `sampled` of spaced blocks (for a file over 64 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if not sampled:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
        size = path.stat().st_size
        for offset in sorted({(size - BLOCK_BYTES) * i // BLOCKS for i in range(BLOCKS + 1)}):
            handle.seek(offset)
            digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def input_key(path: str) -> dict | str:
    """The eval cache key of an input: resolved path and every file's size and content digest
    (a Hub dataset: its name, as given)."""
    files = data_files(path)
    if not files:
        return path
    root = Path(path).resolve()
    return {"path": str(root),
            "files": {str(f.relative_to(root)) if root.is_dir() else f.name: [f.stat().st_size, file_digest(f)]
                      for f in files}}


def template_key(template: str | None) -> dict | str | None:
    """--chat-template: a file by resolved path and content, a literal template as itself."""
    if template and Path(template).is_file():
        path = Path(template).resolve()
        return {"path": str(path), "sha256": file_digest(path)}
    return template


def model_folder(path: str, revision: str | None = None) -> Path | None:
    """The checkpoint on this machine: a local folder or file, or a Hub model's snapshot in the
    Hugging Face cache (its folder is named by the commit); None when it is not there yet."""
    local = Path(path)
    if local.exists():
        return local.resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json", revision=revision)
    except Exception:  # not a valid repo id: the loader will say so
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def model_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder]
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and not f.name.startswith(".") and not f.name.lower().endswith(NOT_MODEL))


def model_identity(path: str, revision: str | None = None) -> dict:
    """{"model_path": where the checkpoint is, "model_digest": its content digest}, both None-safe:
    a Hub model not in the cache keeps its name and has no digest."""
    folder = model_folder(path, revision)
    if folder is None:
        return {"model_path": path, "model_digest": None}
    digest = hashlib.sha256()
    for f in model_files(folder):
        size = f.stat().st_size
        digest.update(f"{f.name}\0{size}\0{file_digest(f, sampled=size > FULL_DIGEST_BYTES)}\n".encode())
    return {"model_path": str(folder), "model_digest": digest.hexdigest()[:16]}


def model_key(path: str, revision: str | None = None) -> dict:
    """The eval cache key of a model: its identity, plus the size and mtime of every file, so a
    checkpoint rewritten in place is scored again even where the sampled digest could miss it."""
    folder = model_folder(path, revision)
    stamps = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in model_files(folder)} if folder else {}
    return model_identity(path, revision) | {"files": stamps}
