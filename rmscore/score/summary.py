"""What a scoring run counts: rows by status, tokens real / computed / padded, batches, forward
paths. `rmscore score`, the Python API, serve and the doctor each add every scored window to one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rmscore.errors import InputError


@dataclass
class RunSummary:
    output: str
    model_type: str = ""
    forward_path: str = ""
    rows_read: int = 0  # input rows of this shard (all of whose completions it owns), summed over workers
    shapes: Counter = field(default_factory=Counter)  # those rows by shape (rmscore/read/contract.py), or "no shape"
    statuses: Counter = field(default_factory=Counter)
    details: Counter = field(default_factory=Counter)  # why rows were not scored, by reason
    tokens: int = 0  # tokens of the scored rows (what a per-example scorer would compute)
    computed_tokens: int = 0  # tokens run through the model, padding excluded (less with prompt reuse)
    padded_tokens: int = 0  # tokens run including padding (what the device paid for)
    batches: int = 0
    paths: Counter = field(default_factory=Counter)  # rows scored by each forward path
    oom_retries: int = 0
    token_budget: int = 0  # padded tokens per batch at the end (lower after an out-of-memory)
    wall_s: float = 0.0  # the whole run, model loading included
    loop_s: float = 0.0  # reading, encoding, forward and writing only: what throughput is measured on
    shard: str = "0/1"
    workers: int = 1  # data-parallel workers whose counts are summed here (torchrun)
    skipped: int = 0  # completions already scored by an earlier run of the same command
    saved: int = 0  # rows in this shard's finished parts, earlier runs included
    complete: bool = False  # the shard was already finished: nothing was loaded or scored
    complete_shards: int = 0  # workers whose shard was already finished (an earlier --shard run, say)
    failed_workers: int = 0  # workers that stopped with an error: not in these counts
    quiet: bool = False  # a torchrun worker other than rank 0: its counts went to rank 0
    damage: str | None = None  # where the input broke off (a .gz cut short): the rows before it are saved
    # What a family counts of its own work: a generative judge's requests, retries, tokens generated.
    counts: Counter = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(self.statuses.values())

    @property
    def padding_efficiency(self) -> float:
        return self.computed_tokens / self.padded_tokens if self.padded_tokens else 1.0

    @property
    def tokens_saved(self) -> int:
        return self.tokens - self.computed_tokens

    def count_batch(self, cost) -> None:
        self.batches += cost.forwards
        self.tokens += cost.real
        self.computed_tokens += cost.computed
        self.padded_tokens += cost.padded

    def add_work(self, other: "RunSummary") -> None:
        """Add the counts of scoring work done elsewhere (a Ray actor's window): statuses, tokens,
        batches, paths; not the run's own (rows read, shards, wall time)."""
        for name in ("statuses", "details", "paths", "counts"):
            getattr(self, name).update(getattr(other, name))
        for name in ("tokens", "computed_tokens", "padded_tokens", "batches", "oom_retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def absorb(self, other: "RunSummary") -> None:
        """Add another worker's counts. A worker whose shard was already complete loaded nothing:
        what it did not set (model type, token budget) comes from the workers that did."""
        for name in ("statuses", "details", "paths", "shapes", "counts"):
            getattr(self, name).update(getattr(other, name))
        for name in ("rows_read", "tokens", "computed_tokens", "padded_tokens", "batches", "oom_retries", "skipped",
                     "saved", "workers", "complete_shards"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wall_s, self.loop_s = max(self.wall_s, other.wall_s), max(self.loop_s, other.loop_s)
        self.complete = self.complete and other.complete
        self.damage = self.damage or other.damage
        self.model_type = self.model_type or other.model_type
        self.token_budget = min(filter(None, (self.token_budget, other.token_budget)), default=0)
        self.forward_path = describe_paths(self.paths)

    def raise_for_damage(self) -> None:
        """A run over a damaged input saved every row it could read; it still must not pass for whole."""
        if self.damage:
            raise InputError(f"{self.damage}: every row before it was scored and saved",
                             "replace the file and rerun with --overwrite to score it whole, or use the rows "
                             "saved as they are (merge and build-pairs accept them)")


def describe_paths(paths: Counter) -> str:
    """Rows per forward path, most used first: "prompt-reuse (636 rows), padded (12 rows)"."""
    return ", ".join(f"{name} ({n:,} rows)" for name, n in paths.most_common())
