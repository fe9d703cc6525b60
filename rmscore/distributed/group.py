"""The one place that touches torch.distributed, and which GPU each data-parallel worker drives.

Workers never exchange tensors: each scores its own hash shard and writes its own parts. The
process group exists only so rank 0 can wait for the others at the end and print totals. It is
gloo on CPU whatever the device: a barrier needs no NCCL communicator, no GPU memory and no
NCCL watchdog. A crashed worker does not leave the others hanging: torchrun stops every worker
when one fails.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from rmscore.distributed.env import DistInfo
from rmscore.errors import ConfigError

# Rank 0 may wait at the final barrier for the slowest worker for as long as its shard takes.
BARRIER_TIMEOUT = timedelta(days=7)


@contextmanager
def joined(dist: DistInfo):
    """A gloo process group for the duration of the block when torchrun started several workers."""
    import torch.distributed as td

    active = dist.world_size > 1 and td.is_available() and not td.is_initialized()
    if active:
        td.init_process_group("gloo", rank=dist.rank, world_size=dist.world_size, timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        if active:
            td.destroy_process_group()


def gather(obj, dist: DistInfo) -> list | None:
    """Every worker's `obj` on rank 0 (None elsewhere); waits for all workers to get here."""
    import torch.distributed as td

    if dist.world_size == 1 or not td.is_initialized():
        return [obj]
    out = [None] * dist.world_size if dist.is_main else None
    td.gather_object(obj, out, dst=0)
    return out


def local_device(dist: DistInfo, requested: str, device_map: str | None) -> str:
    """The device this worker loads its model replica on: cuda:LOCAL_RANK under torchrun."""
    if dist.world_size > 1 and device_map:
        raise ConfigError(
            "--device-map splits one model over every GPU, so it cannot run once per torchrun worker",
            "run a single process with --device-map auto, or drop it to load one replica per GPU",
        )
    if dist.local_rank is None or requested not in ("auto", "cuda"):
        return requested
    import torch

    if not torch.cuda.is_available():
        return requested  # CPU workers (tests, CPU clusters): nothing to pick
    if dist.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"worker LOCAL_RANK={dist.local_rank} but only {torch.cuda.device_count()} GPUs are visible",
            "start at most one worker per GPU (torchrun --nproc-per-node)",
        )
    torch.cuda.set_device(dist.local_rank)  # stray allocations (caches, kernels) land there too
    return f"cuda:{dist.local_rank}"
