"""The shard layout of an output folder: how many shards, and how SLURM or torchrun made them.

Every shard records its layout in its manifest when it starts, before it has scored a row, so a
later run with another shard count is refused even when the first run stopped with nothing
saved (the folder could otherwise never be merged). The record also lets one task of an array,
resubmitted alone (`sbatch --array=2` runs an array of one task: SLURM says task 2 of 1), find
the shard it stands for, and lets `rmscore merge` say exactly what to run again.
"""

from __future__ import annotations

from pathlib import Path

from rmscore.distributed import completion
from rmscore.distributed.env import ArrayTask, DistInfo
from rmscore.errors import InputError, ResumeConflict


def record(dist: DistInfo) -> dict:
    """What a manifest keeps about the layout. `per_task`: shards per task (srun tasks x workers)."""
    array = dist.array and {"low": dist.array.low, "step": dist.array.step, "count": dist.array.count}
    return {"shards": dist.shard_count, "per_task": dist.per_task, "array": array}


def array_spec(array: dict, indices: list[int] | None = None) -> str:
    """The --array value of a recorded array, or of some of its tasks."""
    if indices is None:
        high = array["low"] + (array["count"] - 1) * array["step"]
        return f"{array['low']}-{high}" + (f":{array['step']}" if array["step"] != 1 else "")
    return ranges([array["low"] + i * array["step"] for i in indices])


def recorded_arrays(manifests: dict[str, dict]) -> list[dict]:
    found = [(m.get("layout") or {}).get("array") for m in manifests.values()]
    unique = []
    for array in found:
        if array and array not in unique:
            unique.append(array)
    return unique


def place(dist: DistInfo, out_dir: Path, manifests: dict[str, dict], overwrite: bool, log) -> DistInfo:
    """A lone array task in a folder made by a bigger array: the shard it stands for there.

    Safe because an array of one task cannot shard anything by itself: the folder's own array
    (low, step, count) says which task this is, and the task must map onto it exactly, with as
    many srun tasks and workers as before. Anything else is left to `check` to refuse. Never
    with --overwrite, which may mean "start over with this layout".
    """
    counts = completion.shard_counts(out_dir)
    if overwrite or not dist.lone_array_task or len(counts) != 1 or counts == {dist.shard_count}:
        return dist
    arrays = recorded_arrays(manifests)
    if len(arrays) != 1:
        return dist
    array, shards = arrays[0], counts.pop()
    index, off = divmod(dist.array.task_id - array["low"], array["step"])
    if off or not 0 <= index < array["count"] or shards != array["count"] * dist.per_task:
        return dist
    source = dist.source.replace("SLURM array", f"SLURM array task {dist.array.task_id} of {array_spec(array)}", 1)
    placed = dist.within(ArrayTask(dist.array.task_id, array["low"], array["step"], array["count"]), source)
    log(f"SLURM array of one task ({dist.array.task_id}) into a folder made by --array={array_spec(array)}: "
        f"scoring its shard {placed.shard_index}/{placed.shard_count}")
    return placed


def check(dist: DistInfo, out_dir: Path, overwrite: bool) -> None:
    """Refuse a shard count other than the folder's. --overwrite may start the folder over with
    another count only while no shard of the old count has saved a row: it never deletes other
    shards' finished work."""
    counts = completion.shard_counts(out_dir) - {dist.shard_count}
    if not counts:
        return
    old = max(counts)
    parts = [p for n in counts for p in Path(out_dir).glob(f"part-*-of-{n:05d}-*.parquet")]
    done = sum(1 for n in counts for i in range(n) if completion.done_path(out_dir, f"{i:05d}-of-{n:05d}").is_file())
    if overwrite and not parts:
        return
    this = f"shard count was {old}, now {dist.shard_count} (this run: shard {dist.shard_index}/{dist.shard_count}, " \
           f"{dist.source})"
    one = f"to run one of its shards pass --shard INDEX/{old}"
    if not parts:
        raise ResumeConflict(f"{out_dir} was started with {old} shards and holds no rows yet; {this}",
                             f"resume with {old} shards ({one}), or pass --overwrite to start over with "
                             f"{_shards(dist.shard_count)}")
    held = f"{len(parts)} finished parts, {done} of {old} shards complete"
    if overwrite:
        raise ResumeConflict(f"--overwrite restarts this shard only, and {out_dir} holds the rows of a {old}-shard "
                             f"run ({held}); {this}",
                             f"{one}; to discard those rows delete the folder first, or choose another -o")
    raise ResumeConflict(f"{out_dir} holds a {old}-shard run ({held}); {this}",
                         f"{one}; to start over with {_shards(dist.shard_count)} delete the folder first, "
                         "or choose another -o")


def _shards(n: int) -> str:
    return f"{n} shard" + ("s" if n != 1 else "")


def unfinished(out_dir: Path, count: int, missing: list[int], manifests: dict[str, dict],
               then: str = "merge") -> InputError:
    """The refusal of a folder whose shards have not all finished, naming them and what to run."""
    return InputError(f"{len(missing)} of {count} shards have not finished: {ranges(missing, ', ')} "
                      f"(no {completion.META_DIR}/done-* marker in {out_dir})",
                      rerun_hint(missing, count, manifests, then))


def rerun_hint(missing: list[int], count: int, manifests: dict[str, dict], then: str = "merge") -> str:
    """What to run so that the missing shards finish, in the terms they were started with."""
    layouts = [m["layout"] for m in manifests.values() if (m.get("layout") or {}).get("shards") == count]
    per_task = layouts[0]["per_task"] if layouts else 1
    tasks = sorted({i // per_task for i in missing})
    total = count // per_task
    hint = ("run the same command again with " if len(tasks) == 1 else "run the same command once with each of ")
    hint += ", ".join(f"--shard {t}/{total}" for t in tasks[:3])
    hint += ", ..." if len(tasks) > 3 else ""
    if per_task > 1:
        hint += f" (each launched as before: {per_task} srun tasks or torchrun workers)"
    arrays = recorded_arrays(manifests)
    if len(arrays) == 1 and arrays[0]["count"] == total:
        ids = array_spec(arrays[0], tasks)
        hint += (f", or resubmit that array task alone: sbatch --array={ids} ... (it finds its shard in the folder)"
                 if len(tasks) == 1 else f", or resubmit each of array tasks {ids} alone (sbatch --array=ID ...: "
                 "each finds its shard in the folder)")
    return hint + f"; then {then}"


def ranges(indices: list[int], sep: str = ",") -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the --array syntax), or "0-2, 5" with sep=", "."""
    spans, start = [], indices[0]
    for prev, cur in zip(indices, [*indices[1:], None]):
        if cur != prev + 1:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return sep.join(spans)
