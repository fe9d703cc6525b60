"""Reading scored output back: the folder `rmscore score` writes, or one Parquet file of it.

Only the columns asked for are read, so prompts and completions stay on disk. Rows that were not
scored (status other than ok/truncated, or no finite score) are counted, never silently used. A
folder whose shards have not all finished, or that mixes shard counts, is refused as `rmscore
merge` refuses it (`allow_partial` reads the finished parts of an unfinished one).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path

from rmscore.distributed import completion, layout
from rmscore.errors import InputError
from rmscore.evaluate.bestofn import Group
from rmscore.score.records import SCORED_STATUSES
from rmscore.store.resume import read_manifests

KEEP_HINT = "copy input columns into the scored output with `rmscore score --keep-columns NAME`"
INDEXED = re.compile(r"^(?P<column>.+)\[(?P<index>\d+)\]$")  # rewards[3]


def objective_source(schema, metadata: dict, name: str) -> tuple[str, int] | None:
    """(list column, index) of one objective of a multi-objective model's list column (ArmoRM's
    `rewards`), named by the objective names the output's metadata records or as COLUMN[i]."""
    import pyarrow as pa

    names = list(metadata.get("objectives") or [])
    match = INDEXED.match(name)
    if match:
        column, index = match["column"], int(match["index"])
    elif name in names:
        column, index = "rewards", names.index(name)
    else:
        return None
    if column not in schema.names:
        return None
    kind = schema.field(column).type
    numeric = pa.types.is_list(kind) and (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type))
    if not numeric:
        return None
    if column == "rewards" and names and index >= len(names):
        return None
    return column, index


def objective(schema, metadata: dict, name: str):
    """The objective named `name` (see objective_source) as (dataset expression, type), or None."""
    import pyarrow.compute as pc

    source = objective_source(schema, metadata, name)
    if source is None:
        return None
    column, index = source
    return pc.list_element(pc.field(column), index), schema.field(column).type.value_type


def file_metadata(path: Path) -> dict:
    """The rmscore provenance block of one Parquet file ({} if it has none)."""
    import pyarrow.parquet as pq

    return json.loads((pq.read_schema(path).metadata or {}).get(b"rmscore", b"{}"))


def objective_names(metadata: dict) -> str:
    names = metadata.get("objectives") or []
    return f"; objectives: {', '.join(names)} (or rewards[i])" if names else ""


def read_columns(path: str | Path, columns: list[str], optional: tuple[str, ...] = (),
                 allow_partial: bool = False) -> dict[str, list]:
    """The named columns of a scored folder or file, as Python lists (missing optional ones left
    out). A name that is not a column may be one objective of a list column (see `objective`).
    Parts are read with the kept-column type rule: a column may be int in one part, text in another."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rmscore.read import promote
    from rmscore.store import conform

    files = scored_files(path, allow_partial)
    schemas = {f: pq.read_schema(f) for f in files}
    schema = conform.folder_schema(files)
    names, metadata = schema.names, file_metadata(files[0])
    sources = {c: objective_source(schema, metadata, c) for c in columns if c not in names}
    missing = [c for c, source in sources.items() if source is None]
    if missing:
        raise InputError(f"{path} has no column {', '.join(map(repr, missing))} (it has: {', '.join(names)}"
                         f"{objective_names(metadata)})", KEEP_HINT)
    direct = [c for c in columns if c in names] + [c for c in optional if c in names]
    wanted = list(dict.fromkeys(direct + [column for column, _ in sources.values()]))
    wanted_schema = pa.schema([schema.field(c) for c in wanted])
    table = pa.concat_tables([promote.fit_table(pq.read_table(f, columns=[c for c in wanted if c in s.names]),
                                                wanted_schema) for f, s in schemas.items()])
    out = {c: table[c].to_pylist() for c in dict.fromkeys(direct)}
    for c, (column, index) in sources.items():
        out[c] = pc.list_element(table[column], index).to_pylist()
    return out


def scored_files(path: str | Path, allow_partial: bool = False) -> list[Path]:
    """The part files of a scored folder (every part-*.parquet below it, so all shards of a sharded
    run; hidden folders such as .rmscore/ and an interrupted spill are skipped), or one file. Paths
    are absolute, as given: no library may expand a literal "~" in them (pyarrow does)."""
    path = Path(os.path.abspath(path))
    if path.is_file():
        if not path.name.endswith(".parquet"):
            raise InputError(f"{path} is not a Parquet file", "give the folder written by rmscore score -o")
        return [path]
    if path.is_dir():
        parts = sorted(p for p in path.rglob("part-*.parquet")
                       if not any(d.startswith(".") for d in p.relative_to(path).parts))
        if not parts:
            raise InputError(f"{path} holds no part-*.parquet files", "give the folder written by rmscore score -o")
        for folder in sorted({p.parent for p in parts}):
            check_finished(folder, allow_partial)
        return parts
    raise InputError(f"scored input not found: {path}", "give the folder written by rmscore score -o, "
                                                         "or one of its .parquet files")


def check_finished(folder: Path, allow_partial: bool = False) -> None:
    """Refuse a folder written by `rmscore score` that mixes shard counts (its rows would count
    twice) or whose shards have not all finished (unless `allow_partial`). Folders without
    rmscore's .rmscore/ records are not checked."""
    if not (folder / completion.META_DIR).is_dir() or not completion.shard_counts(folder):
        return
    count, missing = completion.missing_shards(folder)
    if missing and not allow_partial:
        raise layout.unfinished(folder, count, missing, read_manifests(folder), "run this command again, or "
                                "pass --allow-partial to read the finished parts as they are")


def usable(cols: dict[str, list], i: int, score_column: str = "score") -> bool:
    """Row i has a score to use."""
    status = cols["status"][i] if "status" in cols else None
    score = cols[score_column][i]
    return (status is None or status in SCORED_STATUSES) and isinstance(score, (int, float)) and math.isfinite(score)


def cell(cols: dict[str, list], column: str, i: int):
    """A kept column's value for row i; a list kept from a prompt + completions row is indexed by
    the row's completion_index, so per-completion labels can travel as one list per prompt."""
    value = cols[column][i]
    if isinstance(value, list):
        position = cols["completion_index"][i] if "completion_index" in cols else None
        if position is None or not 0 <= position < len(value):
            raise InputError(f"column {column!r} holds a list of {len(value)} but row {i} is completion "
                             f"{position}", "a list column must have one item per completion")
        value = value[position]
    return value


def label(value, column: str) -> float | None:
    """A correctness label: bool or 0/1. None stays None (the row is counted and left out)."""
    if value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return float(value)
    raise InputError(f"label column {column!r} holds {value!r}", "labels must be true/false or 0/1")


def read_groups(path: str | Path, label_column: str, answer_column: str | None = None,
                score_column: str = "score", allow_partial: bool = False) -> tuple[list[Group], Counter]:
    """One best-of-N Group per prompt_id (sorted, so seeded estimates are reproducible) and the
    number of rows left out, by reason."""
    needed = ["prompt_id", score_column, label_column] + ([answer_column] if answer_column else [])
    cols = read_columns(path, needed, ("status", "input_index", "completion_index"), allow_partial)
    skipped: Counter = Counter()
    by_prompt: dict[str, list[tuple]] = {}
    for i in range(len(cols["prompt_id"])):
        if not usable(cols, i, score_column):
            skipped["not scored"] += 1
            continue
        value = label(cell(cols, label_column, i), label_column)
        if value is None:
            skipped["no label"] += 1
            continue
        answer = _answer(cell(cols, answer_column, i), answer_column) if answer_column else None
        order = tuple(cols[c][i] for c in ("input_index", "completion_index") if c in cols)
        by_prompt.setdefault(cols["prompt_id"][i], []).append((order, cols[score_column][i], value, answer))
    if None in by_prompt:  # hand-written input: which completions compete is unknown, so guess nothing
        raise InputError(f"{len(by_prompt[None]):,} scored, labelled rows of {path} have no prompt_id",
                         "best-of-n draws among the completions of one prompt_id: give every row its prompt's id")
    groups = []
    for prompt_id in sorted(by_prompt):
        rows = sorted(by_prompt[prompt_id], key=lambda r: r[0])
        answers = [r[3] for r in rows] if answer_column else None
        groups.append(Group([float(r[1]) for r in rows], [r[2] for r in rows], answers))
    return groups, skipped


def _answer(value, column: str):
    if isinstance(value, (list, dict)):
        raise InputError(f"answer column {column!r} holds {type(value).__name__}s",
                         "an answer must be one string or number per completion")
    return value.strip() if isinstance(value, str) else value
