"""Where `rmscore score`'s windows are scored: the seam between the run and the device(s).

rmscore/score/run.py reads the input, keeps the resume state and writes the parts; a compute turns
windows of samples into output rows. Two kinds exist: LocalCompute, this process's Engine (the
default, and each SLURM/torchrun worker's), and rmscore.ray.pool.RayPool, a pool of Ray actors each
holding the same Engine. Both hand back every window's rows in input order, one row per sample.

A compute has:
  facts       ModelFacts: what the sink writes about the model (picklable: a Ray actor sends it)
  windows()   iterator of sample lists -> iterator of row lists, in the same order; on_rows(rows,
              tokens) is called as rows finish (a progress bar)
  finished()  after a stop or a failure: the rows scored but not handed back yet (salvaged)
  budget      the token budget at the end (lower after an out-of-memory)
  record      a dict the shard's manifest keeps about how it ran (empty: nothing to say)
  close()     free what it holds
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rmscore.score.records import Sample


@dataclass
class ModelFacts:
    """A loaded model as the output folder describes it."""

    family: str
    max_length: int
    dtype: str | None  # of the weights; None for a judge served elsewhere
    metadata: dict  # the family's own provenance (model.metadata())
    output_fields: list = field(default_factory=list)  # pyarrow fields the family adds beside `score`
    reads_steps: bool = False


class LocalCompute:
    """This process's Engine: window k+1 is read and tokenized on a background thread while window
    k is on the device."""

    record: dict = {}

    def __init__(self, engine):
        self.engine, self.facts = engine, engine.facts()

    def windows(self, windows: Iterable[list[Sample]], on_rows: Callable[[int, int], None]) -> Iterator[list[dict]]:
        from rmscore.score.pipeline import prefetch

        scorer = self.engine.scorer
        scorer.on_rows = on_rows  # rows as their batches finish
        # A signal raises Interrupted between batches (or between input rows, in the reader); the
        # run then saves the finished windows and the finished batches of this one (finished()).
        for prepared in prefetch(map(scorer.prepare, windows), depth=1):
            yield scorer.run(prepared)

    def finished(self) -> list[dict]:
        return self.engine.scorer.finished()

    @property
    def budget(self) -> int:
        return self.engine.scorer.budget

    def close(self) -> None:
        self.engine.scorer.on_rows = lambda rows, tokens: None
