"""The only module that reads torchrun and SLURM environment variables.

Everything else receives a DistInfo and never looks at the environment itself.

Three levels combine into one shard of the data, each splitting the one above it:
  task   an explicit --shard INDEX/COUNT, else a SLURM array task, else 0/1;
  srun   a task of an `srun --ntasks=N` step (SLURM_PROCID of SLURM_STEP_NUM_TASKS);
  rank   a data-parallel worker (torchrun / accelerate launch: RANK, WORLD_SIZE).
The shard is ((task * N) + procid) * world_size + rank of tasks * N * world_size, so eight GPUs
in each of four array tasks score 32 disjoint shards, and `rmscore merge` checks that all 32
finished. Levels that are absent count as 0 of 1.

srun is read from SLURM_STEP_NUM_TASKS, which only srun sets: a batch script of a job with
--ntasks=4 also carries SLURM_NTASKS=4 and SLURM_PROCID=0, and must not take itself for one task
of four. torchrun workers that span several srun tasks (multi-node torchrun: WORLD_SIZE larger
than LOCAL_WORLD_SIZE) or ranks set by hand already number every process of the step, so the
srun level is then left out instead of being counted twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from rmscore.errors import ConfigError

RENDEZVOUS_TIMEOUT_S = 300.0  # how long workers wait for each other to join; RMSCORE_RENDEZVOUS_TIMEOUT


@dataclass(frozen=True)
class ArrayTask:
    """This SLURM array task as SLURM describes it (`--array=LOW-HIGH:STEP` runs COUNT tasks)."""

    task_id: int  # SLURM_ARRAY_TASK_ID
    low: int
    step: int
    count: int

    @property
    def index(self) -> int:
        return (self.task_id - self.low) // self.step


@dataclass(frozen=True)
class DistInfo:
    shard_index: int = 0  # which slice of the data this process scores
    shard_count: int = 1
    source: str = "single process"  # where the shard came from, for the run summary
    rank: int = 0  # data-parallel worker inside this task (torchrun RANK)
    world_size: int = 1  # workers inside this task (torchrun WORLD_SIZE)
    local_rank: int | None = None  # torchrun LOCAL_RANK: which GPU of the node this worker drives
    restarts: int = 0  # SLURM_RESTART_COUNT: > 0 when SLURM requeued this job
    array: ArrayTask | None = None  # the SLURM array task, when the task level came from one
    per_task: int = 1  # shards each task splits into (srun tasks x torchrun workers)
    rendezvous_s: float = RENDEZVOUS_TIMEOUT_S
    job: str | None = None  # SLURM_JOB_ID (kept across a requeue): who may take over a shard's lock

    @property
    def is_main(self) -> bool:
        """The worker that prints. Each SLURM array task has its own log, so each task's rank 0."""
        return self.rank == 0

    @property
    def stem(self) -> str:
        return f"{self.shard_index:05d}-of-{self.shard_count:05d}"

    @property
    def lone_array_task(self) -> bool:
        """An array of one task (`sbatch --array=2`): often one task of a bigger array submitted
        again. rmscore/distributed/layout.py places it using the output folder."""
        return self.array is not None and self.array.count == 1

    def within(self, array: ArrayTask, source: str) -> "DistInfo":
        """This process's shard when its task is a task of `array` (a resubmitted array task)."""
        return replace(self, shard_index=array.index * self.per_task + self.shard_index % self.per_task,
                       shard_count=array.count * self.per_task, source=source, array=array)


def dist_info(index: int | None = None, count: int | None = None, environ=os.environ) -> DistInfo:
    """An explicit --shard wins over a SLURM array for the task level; srun and torchrun split it."""
    array = slurm_array(environ) if "SLURM_ARRAY_TASK_ID" in environ else None
    if index is not None and count is not None:
        array, levels = None, [(index, count, "--shard")]
    else:
        levels = [(array.index, array.count, "SLURM array")] if array else []
    tasks = levels[0][1] if levels else 1
    torchrun = torchrun_rank(environ)
    if (srun := srun_task(environ)) and (torchrun is None or torchrun[2]):
        levels.append((*srun, "srun"))
    if torchrun:
        levels.append((*torchrun[:2], "torchrun"))
    shard, shards = 0, 1
    for i, n, _ in levels:
        shard, shards = shard * n + i, shards * n
    rank, world = torchrun[:2] if torchrun else (0, 1)
    return DistInfo(shard, shards, " x ".join(name for *_, name in levels) or "single process", rank, world,
                    int(environ.get("LOCAL_RANK", rank)) if torchrun else None,
                    int(environ.get("SLURM_RESTART_COUNT", 0)), array, shards // tasks, rendezvous_timeout(environ),
                    environ.get("SLURM_JOB_ID"))


def torchrun_rank(environ) -> tuple[int, int, bool] | None:
    """(RANK, WORLD_SIZE, whether every worker runs under this one launcher) or None."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    world = int(environ["WORLD_SIZE"])
    return int(environ["RANK"]), world, int(environ.get("LOCAL_WORLD_SIZE", -1)) == world


def srun_task(environ) -> tuple[int, int] | None:
    """(SLURM_PROCID, SLURM_STEP_NUM_TASKS) inside an srun step of several tasks, else None."""
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", 1))
    if tasks <= 1:
        return None
    procid = int(environ.get("SLURM_PROCID", -1))
    if not 0 <= procid < tasks:
        raise ConfigError(f"srun step of {tasks} tasks but SLURM_PROCID is {environ.get('SLURM_PROCID')!r}",
                          "start rmscore with srun, or pass --shard INDEX/COUNT explicitly")
    return procid, tasks


def rendezvous_timeout(environ) -> float:
    text = environ.get("RMSCORE_RENDEZVOUS_TIMEOUT", "")
    try:
        seconds = float(text) if text else RENDEZVOUS_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"RMSCORE_RENDEZVOUS_TIMEOUT must be a positive number of seconds, got {text!r}")
    return seconds


def slurm_array(environ) -> ArrayTask:
    """This array task, 0-based and dense whatever the --array spec.

    `--array=0-15:4` runs tasks 0, 4, 8, 12: SLURM_ARRAY_TASK_STEP maps them to 0..3. A list
    like `--array=1,5,6` has no dense mapping, so we refuse instead of guessing. SLURM sets MIN,
    MAX and COUNT; when some are missing they are derived (MIN 0, MAX from COUNT or COUNT from
    MAX), so every task of one array gets the same answer.
    """
    task = int(environ["SLURM_ARRAY_TASK_ID"])
    low = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    step = int(environ.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
    if "SLURM_ARRAY_TASK_MAX" in environ:
        high = int(environ["SLURM_ARRAY_TASK_MAX"])
        count = int(environ.get("SLURM_ARRAY_TASK_COUNT", (high - low) // step + 1))
    elif "SLURM_ARRAY_TASK_COUNT" in environ:
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        high = low + (count - 1) * step
    else:
        raise ConfigError(
            "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is",
            "pass --shard INDEX/COUNT explicitly",
        )
    index, off = divmod(task - low, step)
    if off or count != (high - low) // step + 1 or not 0 <= index < count:
        raise ConfigError(
            f"SLURM array task {task} (min {low}, max {high}, step {step}, {count} tasks) "
            "does not map to a shard: the array is not an evenly stepped range",
            "submit with --array=0-N (or 0-N:STEP), or pass --shard INDEX/COUNT explicitly",
        )
    return ArrayTask(task, low, step, count)
