"""The one scoring loop: read -> encode -> batch -> forward -> head -> write.

It never asks which model family it drives: everything family-specific sits behind the adapter
interface (rmscore/models/base.py), and everything about building model inputs behind the forward
runner (rmscore/forward.py). Rows that cannot be scored are written with a status and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from rmscore import records
from rmscore.batching import chunked, plan_batches
from rmscore.config import ScoreConfig
from rmscore.distributed import group
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.distributed.signals import GracefulStop
from rmscore.errors import InputError, Interrupted, RowError
from rmscore.io import output, resume
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
        return self.tokens / self.padded_tokens if self.padded_tokens else 1.0

    def absorb(self, other: "RunSummary") -> None:
        """Add another worker's counts (every worker reads the whole input, so rows_read is not summed)."""
        self.statuses.update(other.statuses)
        self.details.update(other.details)
        for name in ("tokens", "padded_tokens", "batches", "skipped", "saved", "workers"):
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

    def __init__(self, model, runner, max_length: int, cfg: ScoreConfig, summary: RunSummary,
                 check_stop=lambda: None):
        self.model, self.runner, self.max_length = model, runner, max_length
        self.batch_cfg, self.summary = cfg.batch, summary
        self.check_stop = check_stop  # raises Interrupted between batches once SIGTERM/SIGUSR1 arrived

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
            self.check_stop()
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


def _reason(detail: str | None) -> str:
    # Group counts by the kind of problem, not by the exact numbers in the message.
    return (detail or "").split(" (")[0].split(":")[0][:80]


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
    from rmscore.forward import PaddedForward, default_token_budget
    from rmscore.models import load_model

    log(f"reading {source.description} as {layout.kind} rows; shard {summary.shard}")
    device = group.local_device(dist, cfg.model.device, cfg.model.device_map)
    model, family = load_model(replace(cfg.model, device=device))
    runner = PaddedForward(model)
    summary.model_type, summary.forward_path = family, runner.name
    max_length = cfg.batch.max_length or model.max_length
    if cfg.batch.max_tokens_per_batch is None:
        cfg.batch.max_tokens_per_batch = default_token_budget(model, max_length)
    log(f"model {cfg.model.path} as {family} on {model.device}; max length {max_length}, "
        f"{cfg.batch.max_tokens_per_batch} tokens per batch, {runner.name} forward")
    sink = output.ScoreSink(state.out_dir, model, cfg, max_length, family, state)
    state.check_resolved(sink.metadata)
    scorer = Scorer(model, runner, max_length, cfg, summary, stop.check)
    samples = state.pending(stop.watch(iter_samples(source, layout, dist, cfg.input.limit, summary)))
    try:
        _loop(scorer, sink, samples, cfg, summary, dist)
    except Interrupted as stopped:
        sink.close()  # the part being written keeps the whole windows already in it
        stopped.message += f" after saving {state.rows:,} scored rows of shard {summary.shard}"
        raise
    state.finish(cfg.input.limit)


def _loop(scorer: Scorer, sink, samples: Iterator[Sample], cfg: ScoreConfig, summary: RunSummary, dist) -> None:
    progress = Progress(total=None, enabled=cfg.progress, quiet=not dist.is_main)
    loop_start = time.perf_counter()
    try:
        # A signal raises Interrupted between batches; the window being scored is dropped whole,
        # so every part on disk holds complete rows in input order.
        for window in chunked(samples, cfg.batch.window):
            rows = scorer.score_window(window)
            sink.write(rows)
            progress.update(len(rows), sum(r["num_tokens"] or 0 for r in rows))
        sink.close()
    finally:
        progress.close()
        summary.loop_s = time.perf_counter() - loop_start
