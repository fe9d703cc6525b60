"""The only module that reads torchrun and SLURM environment variables.

Everything else receives a DistInfo and never looks at the environment itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    shard_index: int = 0  # which slice of the data this process scores
    shard_count: int = 1
    source: str = "single process"  # where the shard came from, for the run summary

    @property
    def is_main(self) -> bool:
        return self.shard_index == 0


def dist_info(index: int | None = None, count: int | None = None, environ=os.environ) -> DistInfo:
    """An explicit --shard wins; else torchrun's RANK/WORLD_SIZE; else a SLURM array; else 0/1."""
    if index is not None and count is not None:
        return DistInfo(index, count, "--shard")
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return DistInfo(int(environ["RANK"]), int(environ["WORLD_SIZE"]), "torchrun")
    if "SLURM_ARRAY_TASK_ID" in environ:
        task = int(environ["SLURM_ARRAY_TASK_ID"])
        low = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
        if "SLURM_ARRAY_TASK_COUNT" in environ:
            count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        else:
            count = int(environ.get("SLURM_ARRAY_TASK_MAX", task)) - low + 1
        return DistInfo(task - low, count, "SLURM array")
    return DistInfo()
