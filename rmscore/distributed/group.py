"""The one place that touches torch.distributed, and which GPU each data-parallel worker drives.

Workers never exchange tensors: each scores its own hash shard and writes its own parts. They
meet twice, through the key-value store that init_process_group would use (torchrun's agent
store, or a TCPStore on MASTER_ADDR:MASTER_PORT that rank 0 serves):
  at the start, where every worker must join within DistInfo.rendezvous_s (minutes: a worker
  that never starts is an error, said in one line, not a silent wait);
  at the end, where rank 0 waits, for as long as the slowest shard takes, for every worker's
  summary, and prints the totals.
A worker that fails with an exception posts an empty summary, so rank 0 never waits for it;
one that is killed is torchrun's business (it stops every worker when one fails).

There is deliberately no process group. A gloo group outlived destroy_process_group():
torch.distributed.nn, imported by transformers while the model loads, binds `group=group.WORLD`
default arguments to the live group, so gloo's threads ran on until the interpreter exited and,
when starved of CPU, aborted the finished worker ("terminate called without an active
exception", torchrun exit 1). A store client has no threads; rank 0's server stops when `joined`
drops the store.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from datetime import timedelta

from rmscore.distributed.env import DistInfo
from rmscore.errors import ConfigError

FINAL_TIMEOUT = timedelta(days=7)  # rank 0 waits this long at the end for the slowest worker


class Meeting:
    """The workers of one run, met through their store. Alone (one worker): gather returns [obj]."""

    def __init__(self, dist: DistInfo, store=None):
        self.dist, self.store = dist, store

    def gather(self, obj) -> list | None:
        """Every worker's `obj` on rank 0, None for a worker that failed; None on the other ranks.
        Rank 0 waits for every worker to get here (or fail)."""
        if self.store is None:
            return [obj]
        self.post(obj)
        if not self.dist.is_main:
            return None
        keys = [f"summary/{r}" for r in range(self.dist.world_size)]
        self.store.wait(keys, FINAL_TIMEOUT)
        return [pickle.loads(self.store.get(key)) for key in keys]

    def post(self, obj) -> None:
        key = f"summary/{self.dist.rank}"
        if self.store is not None and not self.store.check([key]):
            self.store.set(key, pickle.dumps(obj))


@contextmanager
def joined(dist: DistInfo):
    """Meet the other workers for the duration of the block (when several were started)."""
    import torch.distributed as td

    if dist.world_size == 1 or not td.is_available():
        yield Meeting(dist)
        return
    meeting = Meeting(dist, _join(td, dist))
    try:
        yield meeting
    except BaseException:
        try:
            meeting.post(None)  # rank 0 must not wait for a worker that stopped
        except RuntimeError:
            pass  # the store is gone too; the error that stopped this worker is the one to report
        raise
    finally:
        meeting.store = None  # rank 0's store server (launch by hand) stops here


def _join(td, dist: DistInfo):
    wait = timedelta(seconds=dist.rendezvous_s)
    keys = [f"joined/{r}" for r in range(dist.world_size)]
    store = None
    try:
        store, _, _ = next(td.rendezvous("env://", dist.rank, dist.world_size, timeout=wait))
        store = td.PrefixStore("rmscore", store)
        store.set(keys[dist.rank], b"1")
        store.wait(keys, wait)
        return store
    except (RuntimeError, ValueError) as exc:  # torch.distributed.DistError, or no MASTER_ADDR
        absent = [str(r) for r, key in enumerate(keys) if store is not None and not store.check([key])]
        raise ConfigError(
            f"worker {dist.rank} of {dist.world_size} waited {dist.rendezvous_s:g} s for the others and gave up: "
            + (f"worker(s) {', '.join(absent)} never joined" if absent else _first_line(exc)),
            "start every worker (torchrun --nproc-per-node N starts them together; by hand, give each the same "
            "MASTER_ADDR, MASTER_PORT and WORLD_SIZE), or give slow starts longer with "
            "RMSCORE_RENDEZVOUS_TIMEOUT=SECONDS",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
