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
from rmscore.batching import chunked, plan_batches
from rmscore.config import ScoreConfig
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.errors import ConfigError, InputError, RowError
from rmscore.io import output
from rmscore.io.layout import Layout, detect_layout, expand
from rmscore.io.sources import Source, open_source
from rmscore.progress import Progress
from rmscore.records import Encoded, Sample


@dataclass
class RunSummary:
    output: str
    model_type: str = ""
    forward_path: str = ""
    rows_read: int = 0
    statuses: Counter = field(default_factory=Counter)
    details: Counter = field(default_factory=Counter)  # why rows were not scored, by reason
    tokens: int = 0  # real tokens through the model
    padded_tokens: int = 0  # tokens computed including padding
    batches: int = 0
    wall_s: float = 0.0  # the whole run, model loading included
    loop_s: float = 0.0  # reading, encoding, forward and writing only: what throughput is measured on

    @property
    def samples(self) -> int:
        return sum(self.statuses.values())

    @property
    def padding_efficiency(self) -> float:
        return self.tokens / self.padded_tokens if self.padded_tokens else 1.0


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


def fit_length(enc: Encoded, max_length: int, policy: str, sample: Sample) -> Encoded:
    """Apply --on-overflow. Never cuts silently: the status says what happened."""
    if len(enc) <= max_length:
        return enc
    if policy == "error":
        raise InputError(
            f"input row {sample.input_index} has {len(enc)} tokens, more than --max-length {max_length}",
            "raise --max-length, or use --on-overflow skip / truncate-left",
        )
    if policy == "skip":
        raise RowError(records.TOO_LONG, f"longer than the max length ({len(enc)} > {max_length} tokens)")
    drop = len(enc) - max_length
    if min(enc.positions, default=0) < drop:
        raise RowError(records.TOO_LONG, f"truncating would cut a position the model reads ({len(enc)} tokens)")
    types = enc.token_type_ids[drop:] if enc.token_type_ids else None
    return Encoded(enc.ids[drop:], [p - drop for p in enc.positions], types, enc.expected_positions,
                   records.TRUNCATED, f"dropped the first {drop} of {len(enc)} tokens")


class Scorer:
    """Scores windows of samples with one model and one forward runner."""

    def __init__(self, model, runner, max_length: int, cfg: ScoreConfig, summary: RunSummary):
        self.model, self.runner, self.max_length = model, runner, max_length
        self.batch_cfg, self.summary = cfg.batch, summary

    def score_window(self, samples: list[Sample]) -> list[dict]:
        done: dict[tuple, dict] = {}
        ready: list[tuple[Sample, Encoded]] = []
        for sample, enc in zip(samples, self._encode(samples)):
            try:
                if isinstance(enc, RowError):
                    raise enc
                enc = fit_length(enc, self.max_length, self.batch_cfg.on_overflow, sample)
                _check_positions(enc)
                ready.append((sample, enc))
            except RowError as problem:
                done[sample.key] = self._row(sample, enc if isinstance(enc, Encoded) else None, {}, problem)
        for batch in self._batches(ready):
            outputs = self.runner.score([enc for _, enc in batch])
            for (sample, enc), out in zip(batch, outputs, strict=True):
                done[sample.key] = self._row(sample, enc, out)
        return [done[s.key] for s in samples]  # input order, whatever the batch order

    def _encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        out: list[Encoded | RowError | None] = [
            None if s.error is None else RowError(records.INVALID_ROW, s.error) for s in samples
        ]
        todo = [i for i, s in enumerate(samples) if s.error is None]
        try:
            encoded = self.model.encode([samples[i] for i in todo])
        except Exception:  # one bad row (a template that raises) must not sink the window
            encoded = [self._encode_one(samples[i]) for i in todo]
        for i, enc in zip(todo, encoded, strict=True):
            out[i] = enc
        return out

    def _encode_one(self, sample: Sample) -> Encoded | RowError:
        try:
            return self.model.encode([sample])[0]
        except Exception as exc:
            return RowError(records.INVALID_ROW, f"cannot render: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def _batches(self, ready: list[tuple[Sample, Encoded]]) -> Iterator[list[tuple[Sample, Encoded]]]:
        lengths = [len(enc) for _, enc in ready]
        budget = self.batch_cfg.max_tokens_per_batch
        for indices in plan_batches(lengths, budget, self.batch_cfg.max_batch_size):
            batch = [ready[i] for i in indices]
            self.summary.batches += 1
            self.summary.tokens += sum(lengths[i] for i in indices)
            self.summary.padded_tokens += self.runner.padded_tokens([enc for _, enc in batch])
            yield batch

    def _row(self, sample: Sample, enc: Encoded | None, out: dict, problem: RowError | None = None) -> dict:
        status = problem.status if problem else enc.status
        detail = problem.detail if problem else enc.detail
        self.summary.statuses[status] += 1
        if problem:
            self.summary.details[f"{status}: {_reason(detail)}"] += 1
        row = {
            "input_index": sample.input_index, "completion_index": sample.completion_index,
            "prompt_id": sample.prompt_id, "side": sample.side, "prompt": sample.prompt,
            "prompt_is_text": sample.prompt_is_text, "completion": sample.completion,
            "num_tokens": len(enc) if enc is not None else None, "status": status, "status_detail": detail,
        }
        row.update(out)
        row.update(sample.extra)
        return row


def _check_positions(enc: Encoded) -> None:
    if enc.expected_positions is not None and len(enc.positions) != enc.expected_positions:
        raise RowError(
            records.STEP_MISMATCH,
            f"found {len(enc.positions)} step positions for {enc.expected_positions} steps",
        )
    if not enc.positions:
        raise RowError(records.INVALID_ROW, "nothing to read: no score position in the rendered input")


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


def _reason(detail: str | None) -> str:
    # Group counts by the kind of problem, not by the exact numbers in the message.
    return (detail or "").split(" (")[0].split(":")[0][:80]


def run_score(cfg: ScoreConfig, log=print) -> RunSummary:
    from rmscore.forward import PaddedForward, default_token_budget
    from rmscore.models import load_model

    start = time.perf_counter()
    source, layout = open_input(cfg)
    dist = dist_info(cfg.shard.index, cfg.shard.count)
    out_dir = output.prepare(Path(cfg.output.path), cfg.output.overwrite)
    log(f"reading {source.description} as {layout.kind} rows")
    model, family = load_model(cfg.model, check=lambda adapter, name: check_steps_input(layout, cfg, adapter, name))
    runner = PaddedForward(model)
    summary = RunSummary(str(out_dir), family, runner.name)
    max_length = cfg.batch.max_length or model.max_length
    if cfg.batch.max_tokens_per_batch is None:
        cfg.batch.max_tokens_per_batch = default_token_budget(model, max_length)
    log(f"model {cfg.model.path} as {family}; max length {max_length}, "
        f"{cfg.batch.max_tokens_per_batch} tokens per batch, {runner.name} forward")
    scorer = Scorer(model, runner, max_length, cfg, summary)
    sink = output.ScoreSink(out_dir, model, cfg, dist, max_length, family)
    progress = Progress(total=None, enabled=cfg.progress, quiet=not dist.is_main)
    loop_start = time.perf_counter()
    try:
        for window in chunked(iter_samples(source, layout, dist, cfg.input.limit, summary), cfg.batch.window):
            rows = scorer.score_window(window)
            sink.write(rows)
            progress.update(len(rows), sum(r["num_tokens"] or 0 for r in rows))
        sink.close()
    finally:
        progress.close()
    summary.wall_s = time.perf_counter() - start
    summary.loop_s = time.perf_counter() - loop_start
    sink.write_stats(summary)
    return summary

