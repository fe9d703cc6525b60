"""The one scoring run: open input -> resume state -> model -> windows of samples -> Parquet parts.

It never asks which model family it drives: everything family-specific sits behind the adapter
interface (rmscore/models/base.py), how rows are laid out for the device behind the forward runners
(rmscore/forward/), and one window's encode/batch/forward in rmscore/scorer.py. Rows that cannot
be scored are written with a status and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from rmscore import records
from rmscore.batching import chunked
from rmscore.config import ScoreConfig
from rmscore.distributed import group
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.distributed.signals import GracefulStop
from rmscore.errors import ConfigError, InputError, Interrupted
from rmscore.io import output, resume
from rmscore.io.layout import Layout, detect_layout, expand
from rmscore.io.sources import Source, open_source
from rmscore.progress import Progress
from rmscore.records import Sample


@dataclass
class RunSummary:
    output: str
    model_type: str = ""
    forward_path: str = ""
    rows_read: int = 0
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
    quiet: bool = False  # a torchrun worker other than rank 0: its counts went to rank 0

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

    def absorb(self, other: "RunSummary") -> None:
        """Add another worker's counts (every worker reads the whole input, so rows_read is not summed)."""
        for name in ("statuses", "details", "paths"):
            getattr(self, name).update(getattr(other, name))
        for name in ("tokens", "computed_tokens", "padded_tokens", "batches", "oom_retries", "skipped", "saved",
                     "workers"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wall_s, self.loop_s = max(self.wall_s, other.wall_s), max(self.loop_s, other.loop_s)
        self.complete = self.complete and other.complete


def open_input(cfg: ScoreConfig) -> tuple[Source, Layout]:
    """Open and check the input before anything heavy loads: a bad input stops the run here."""
    source = open_source(cfg.input.path, cfg.input.split, cfg.input.config_name)
    return source, detect_layout(source.columns, cfg.input.columns, cfg.input.keep_columns)


def iter_samples(source: Source, layout: Layout, dist: DistInfo, limit: int | None,
                 summary: RunSummary) -> Iterator[Sample]:
    for row in source.rows():
        if limit is not None and row.index >= limit:
            return
        summary.rows_read += 1
        for sample in expand(row, layout):
            if owns(sample, dist):
                yield sample


def owns(sample: Sample, dist: DistInfo) -> bool:
    """All completions of one prompt go to the same shard, so pairs can be built per shard."""
    if dist.shard_count == 1:
        return True
    key = sample.prompt_id if sample.prompt_id is not None else str(sample.input_index)
    return records.stable_bucket(key, dist.shard_count) == dist.shard_index


def check_steps_input(layout: Layout, cfg: ScoreConfig, adapter, family: str) -> None:
    """Step columns and step options need a process reward model; never ignore them silently."""
    if adapter.reads_steps:
        return
    from rmscore.models import step_families

    prms = ", ".join(step_families())
    if layout.steps:
        raise InputError(
            f"the input has a step column {layout.steps!r}, but {family} is an outcome reward model: it scores "
            "whole completions",
            f"to score steps pass a process reward model (--model-type {prms}); to ignore the column pass "
            "--steps-col ''",
        )
    if cfg.model.step_separator is not None or cfg.model.step_tokens is not None:
        raise ConfigError(f"--step-separator and --step-tokens apply to process reward models ({prms}), "
                          f"not {family}")


def run_score(cfg: ScoreConfig, log=print) -> RunSummary:
    """Score this process's shard into cfg.output.path, resuming what earlier runs finished.
    Under torchrun, rank 0's summary holds every worker's counts; the others come back quiet."""
    start = time.perf_counter()
    source, layout = open_input(cfg)
    dist = dist_info(cfg.shard.index, cfg.shard.count)
    log = log if dist.is_main else _silent
    state = resume.open_output(cfg, dist, log)
    summary = RunSummary(cfg.output.path, shard=f"{dist.shard_index}/{dist.shard_count} ({dist.source})")
    with group.joined(dist), GracefulStop() as stop:
        summary.complete = state.complete
        try:
            if not state.complete:
                _score_shard(cfg, source, layout, dist, state, stop, summary, log)
        finally:
            summary.wall_s = time.perf_counter() - start
            summary.skipped, summary.saved = state.skipped, state.rows
            if not state.complete:
                output.write_stats(state.out_dir, state.stem, summary)
        everyone = group.gather(summary, dist)
    for other in (everyone or [])[1:]:
        summary.absorb(other)
    summary.quiet = not dist.is_main
    return summary


def _silent(*_) -> None:
    pass


def _score_shard(cfg: ScoreConfig, source, layout, dist: DistInfo, state, stop: GracefulStop, summary: RunSummary,
                 log) -> None:
    from rmscore.forward import Runners, default_token_budget
    from rmscore.models import load_model
    from rmscore.scorer import Scorer

    log(f"reading {source.description} as {layout.kind} rows; shard {summary.shard}")
    device = group.local_device(dist, cfg.model.device, cfg.model.device_map)
    model, family = load_model(replace(cfg.model, device=device),
                               check=lambda adapter, name: check_steps_input(layout, cfg, adapter, name))
    summary.model_type = family
    max_length = cfg.batch.max_length or model.max_length
    if cfg.batch.max_tokens_per_batch is None:
        cfg.batch.max_tokens_per_batch = default_token_budget(model, max_length)
    log(f"model {cfg.model.path} as {family} on {model.device}; max length {max_length}, "
        f"{cfg.batch.max_tokens_per_batch} tokens per batch, forward path {cfg.batch.forward}")
    sink = output.ScoreSink(state.out_dir, model, cfg, max_length, family, state)
    state.check_resolved(sink.metadata)
    scorer = Scorer(model, Runners(model, cfg.batch.forward), max_length, cfg.batch, summary, stop.check)
    samples = state.pending(stop.watch(iter_samples(source, layout, dist, cfg.input.limit, summary)))
    try:
        _loop(scorer, sink, samples, cfg, summary, dist)
    except Interrupted as stopped:
        sink.close()  # the part being written keeps the whole windows already in it
        stopped.message += f" after saving {state.rows:,} scored rows of shard {summary.shard}"
        raise
    finally:
        summary.forward_path = ", ".join(f"{name} ({n:,} rows)" for name, n in summary.paths.most_common())
        summary.token_budget = scorer.budget
    state.finish(cfg.input.limit)


def _loop(scorer, sink, samples: Iterator[Sample], cfg: ScoreConfig, summary: RunSummary, dist) -> None:
    from rmscore.pipeline import prefetch

    progress = Progress(total=None, enabled=cfg.progress, quiet=not dist.is_main)
    loop_start = time.perf_counter()
    try:
        # Window k+1 is read and tokenized on a background thread while window k is on the device.
        # A signal raises Interrupted between batches (or between input rows, in the reader); the
        # window being scored is dropped whole, so every part on disk holds complete rows in order.
        for prepared in prefetch(map(scorer.prepare, chunked(samples, cfg.batch.window)), depth=1):
            rows = scorer.run(prepared)
            sink.write(rows)
            progress.update(len(rows), sum(r["num_tokens"] or 0 for r in rows))
        sink.close()
    finally:
        progress.close()
        summary.loop_s = time.perf_counter() - loop_start
