"""The only module that reads torchrun and SLURM environment variables.

Everything else receives a DistInfo and never looks at the environment itself.

Two levels combine into one shard of the data:
  task  an explicit --shard INDEX/COUNT, else a SLURM array task, else 0/1;
  rank  a data-parallel worker inside the task (torchrun / accelerate launch: RANK, WORLD_SIZE).
The shard is task * world_size + rank of task_count * world_size, so eight GPUs in each of four
array tasks score 32 disjoint shards, and `rmscore merge` checks that all 32 finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rmscore.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    shard_index: int = 0  # which slice of the data this process scores
    shard_count: int = 1
    source: str = "single process"  # where the shard came from, for the run summary
    rank: int = 0  # data-parallel worker inside this task (torchrun RANK)
    world_size: int = 1  # workers inside this task (torchrun WORLD_SIZE)
    local_rank: int | None = None  # torchrun LOCAL_RANK: which GPU of the node this worker drives
    restarts: int = 0  # SLURM_RESTART_COUNT: > 0 when SLURM requeued this job
    job: str | None = None  # SLURM_JOB_ID (kept across a requeue): who may take over a shard's lock

    @property
    def is_main(self) -> bool:
        """The worker that prints. Each SLURM array task has its own log, so each task's rank 0."""
        return self.rank == 0

    @property
    def stem(self) -> str:
        return f"{self.shard_index:05d}-of-{self.shard_count:05d}"


def dist_info(index: int | None = None, count: int | None = None, environ=os.environ) -> DistInfo:
    """An explicit --shard wins over a SLURM array for the task level; torchrun splits it further."""
    if index is not None and count is not None:
        task, tasks, source = index, count, "--shard"
    elif "SLURM_ARRAY_TASK_ID" in environ:
        (task, tasks), source = slurm_array(environ), "SLURM array"
    else:
        task, tasks, source = 0, 1, None
    rank, world, local = 0, 1, None
    if "RANK" in environ and "WORLD_SIZE" in environ:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local = int(environ.get("LOCAL_RANK", rank))
        source = f"{source} x torchrun" if source else "torchrun"
    return DistInfo(task * world + rank, tasks * world, source or "single process", rank, world, local,
                    int(environ.get("SLURM_RESTART_COUNT", 0)), environ.get("SLURM_JOB_ID"))


def slurm_array(environ) -> tuple[int, int]:
    """(index, count) of this array task, 0-based and dense whatever the --array spec.

    `--array=0-15:4` runs tasks 0, 4, 8, 12: SLURM_ARRAY_TASK_STEP maps them to 0..3. A list
    like `--array=1,5,6` has no dense mapping, so we refuse instead of guessing.
    """
    task = int(environ["SLURM_ARRAY_TASK_ID"])
    low = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    step = int(environ.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
    if "SLURM_ARRAY_TASK_MAX" not in environ and "SLURM_ARRAY_TASK_COUNT" not in environ:
        raise ConfigError(
            "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is",
            "pass --shard INDEX/COUNT explicitly",
        )
    high = int(environ.get("SLURM_ARRAY_TASK_MAX", task))
    count = int(environ.get("SLURM_ARRAY_TASK_COUNT", (high - low) // step + 1))
    index, off = divmod(task - low, step)
    if off or count != (high - low) // step + 1 or not 0 <= index < count:
        raise ConfigError(
            f"SLURM array task {task} (min {low}, max {high}, step {step}, {count} tasks) "
            "does not map to a shard: the array is not an evenly stepped range",
            "submit with --array=0-N (or 0-N:STEP), or pass --shard INDEX/COUNT explicitly",
        )
    return index, count
