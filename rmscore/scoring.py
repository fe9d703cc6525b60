"""The one scoring loop: read -> encode -> batch -> forward -> head -> write.

It never asks which model family it drives: everything family-specific sits behind the adapter
interface (rmscore/models/base.py), and everything about building model inputs behind the forward
runner (rmscore/forward.py). Rows that cannot be scored are written with a status and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rmscore import records
from rmscore.batching import chunked
from rmscore.config import ScoreConfig
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.errors import ConfigError, InputError
from rmscore.io import output
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
        self.batches += 1
        self.tokens += cost.real
        self.computed_tokens += cost.computed
        self.padded_tokens += cost.padded


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
    from rmscore.forward import Runners, default_token_budget
    from rmscore.models import load_model
    from rmscore.pipeline import prefetch
    from rmscore.scorer import Scorer

    start = time.perf_counter()
    source, layout = open_input(cfg)
    dist = dist_info(cfg.shard.index, cfg.shard.count)
    out_dir = output.prepare(Path(cfg.output.path), cfg.output.overwrite)
    log(f"reading {source.description} as {layout.kind} rows")
    model, family = load_model(cfg.model, check=lambda adapter, name: check_steps_input(layout, cfg, adapter, name))
    runners = Runners(model, cfg.batch.forward)
    summary = RunSummary(str(out_dir), family)
    max_length = cfg.batch.max_length or model.max_length
    if cfg.batch.max_tokens_per_batch is None:
        cfg.batch.max_tokens_per_batch = default_token_budget(model, max_length)
    log(f"model {cfg.model.path} as {family}; max length {max_length}, "
        f"{cfg.batch.max_tokens_per_batch} tokens per batch, forward path {cfg.batch.forward}")
    scorer = Scorer(model, runners, max_length, cfg.batch, summary)
    sink = output.ScoreSink(out_dir, model, cfg, dist, max_length, family)
    progress = Progress(total=None, enabled=cfg.progress, quiet=not dist.is_main)
    loop_start = time.perf_counter()
    windows = chunked(iter_samples(source, layout, dist, cfg.input.limit, summary), cfg.batch.window)
    try:
        # Tokenizing window k+1 on a background thread while window k is on the device.
        for prepared in prefetch(map(scorer.prepare, windows), depth=1):
            rows = scorer.run(prepared)
            sink.write(rows)
            progress.update(len(rows), sum(r["num_tokens"] or 0 for r in rows))
        sink.close()
    finally:
        progress.close()
    summary.forward_path = ", ".join(f"{name} ({n:,} rows)" for name, n in summary.paths.most_common()) or "none"
    summary.token_budget = scorer.budget
    summary.wall_s = time.perf_counter() - start
    summary.loop_s = time.perf_counter() - loop_start
    sink.write_stats(summary)
    return summary
