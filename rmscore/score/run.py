"""The one scoring run: open input -> resume state -> model -> windows of samples -> Parquet parts.

It never asks which model family it drives: everything family-specific sits behind the adapter
interface (rmscore/models/base.py), how rows are laid out for the device behind the forward runners
(rmscore/score/forward/), and one window's encode/batch/forward in rmscore/score/scorer.py. Rows that cannot
be scored are written with a status and counted. Where the windows are scored is a compute
(rmscore/score/compute.py): this process's Engine, or with --ray a pool of Ray actors; this process
alone reads the input and writes the parts either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial

from rmscore.config import ScoreConfig
from rmscore.distributed import group
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.distributed.signals import GracefulStop
from rmscore.errors import ConfigError, InputError, Interrupted
from rmscore.progress import Progress
from rmscore.read.contract import Reading, reading_of
from rmscore.read.layout import row_samples
from rmscore.read.rows import Source
from rmscore.read.sources import open_source
from rmscore.score import records
from rmscore.score.batching import chunked
from rmscore.score.records import Sample
from rmscore.score.summary import RunSummary, describe_paths
from rmscore.store import lock, output, resume


def open_input(cfg: ScoreConfig) -> tuple[Source, Reading]:
    """Open and check the input before anything heavy loads: a bad input stops the run here."""
    source = open_source(cfg.input.path, cfg.input.split, cfg.input.config_name)
    i = cfg.input
    reading = reading_of(source, i.columns, i.keep_columns, i.json_columns)
    output.check_keep_columns(cfg.input.keep_columns, output.BASE_SCHEMA.names)
    return source, reading


def iter_samples(source: Source, reading: Reading, dist: DistInfo, limit: int | None,
                 summary: RunSummary) -> Iterator[Sample]:
    for row in source.rows():
        if limit is not None and row.index >= limit:
            return
        # A row's completions share its prompt, so one shard owns the whole row: the shard counts it.
        shape, samples = row_samples(row, reading)
        owned = [sample for sample in samples if owns(sample, dist)]
        summary.rows_read += bool(owned)
        summary.shapes[shape or "no shape"] += bool(owned)
        yield from owned


def owns(sample: Sample, dist: DistInfo) -> bool:
    """All completions of one prompt go to the same shard, so pairs can be built per shard."""
    if dist.shard_count == 1:
        return True
    key = sample.prompt_id if sample.prompt_id is not None else str(sample.input_index)
    return records.stable_bucket(key, dist.shard_count) == dist.shard_index


def check_steps_input(columns: list[str], cfg: ScoreConfig, adapter, family: str) -> None:
    """Step columns and step options need a process reward model; never ignore them silently."""
    if adapter.reads_steps:
        return
    from rmscore.models import step_families

    prms = ", ".join(step_families())
    steps = Reading(cfg.input.columns).name("steps")
    if steps in columns:
        raise InputError(
            f"the input has a step column {steps!r}, but {family} is an outcome reward model: it scores "
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
    source, reading = open_input(cfg)
    dist = dist_info(cfg.shard.index, cfg.shard.count)
    if cfg.ray is not None and dist.shard_count > 1:  # before the folder is claimed for that shard count
        raise ConfigError(f"--ray scores the whole input from one process; this run is shard {dist.shard_index}/"
                          f"{dist.shard_count} ({dist.source})",
                          "drop --shard (and run outside a SLURM array or torchrun), or drop --ray")
    log = log if dist.is_main else _silent
    # A one-task array resubmission learns its shard from the folder, before it takes that shard's lock.
    dist = resume.shard_for(cfg, dist, log)
    # One writer per shard, taken before anything in the folder is cleared or written.
    with lock.ShardLock(resume.output_dir(cfg), dist) as held, group.joined(dist) as workers, \
            GracefulStop() as stop:
        state = resume.open_output(cfg, dist, log)
        state.check_input(cfg.input.path, lambda: iter_samples(source, reading, dist, cfg.input.limit, RunSummary("")))
        state.guard = held.check
        summary = RunSummary(cfg.output.path, shard=f"{dist.shard_index}/{dist.shard_count} ({dist.source})")
        summary.complete, summary.complete_shards, summary.damage = state.complete, int(state.complete), state.damage
        try:
            if not state.complete:
                _score_shard(cfg, source, reading, dist, state, stop, summary, log)
        finally:
            summary.wall_s = time.perf_counter() - start
            summary.skipped, summary.saved = state.skipped, state.rows
            if not state.complete:
                _write_stats(state, summary, log)
        everyone = workers.gather(summary)
    for other in (everyone or [])[1:]:
        if other is None:  # that worker failed and said why itself; its rows are not counted here
            summary.failed_workers, summary.complete = summary.failed_workers + 1, False
        else:
            summary.absorb(other)
    summary.quiet = not dist.is_main
    return summary


def _silent(*_) -> None:
    pass


def _write_stats(state, summary: RunSummary, log) -> None:
    try:
        output.write_stats(state.out_dir, state.stem, summary)
    except OSError as exc:  # a full disk must not hide the error that stopped the run
        log(f"could not write the run statistics: {exc}")


def _score_shard(cfg: ScoreConfig, source, reading: Reading, dist: DistInfo, state, stop: GracefulStop,
                 summary: RunSummary, log) -> None:
    log(f"reading {source.description}, each row's shape from its own fields; shard {summary.shard}")
    compute = _compute(cfg, source, dist, stop, summary, log)
    try:
        sink = output.ScoreSink(state.out_dir, compute.facts, cfg, state)
        state.check_resolved(sink.metadata)
        state.note_run(compute.record)
        reading = replace(reading, reads_steps=compute.facts.reads_steps)
        samples = state.pending(stop.watch(iter_samples(source, reading, dist, cfg.input.limit, summary)))
        try:
            _loop(compute, sink, samples, cfg, summary, dist)
        except BaseException as failure:
            _keep_finished(sink, compute, log)
            saved = f"after saving {state.rows:,} scored rows of shard {summary.shard}"
            if isinstance(failure, Interrupted):
                failure.message += f" {saved}"
            else:
                log(f"stopped by {type(failure).__name__} {saved}; rerun the same command to continue")
            raise
        finally:
            summary.forward_path = describe_paths(summary.paths)
            summary.token_budget = compute.budget
    finally:
        compute.close()
    summary.damage = source.damage
    if summary.damage:
        log(f"the input breaks off: {summary.damage}")
    state.finish(cfg.input.limit, summary.damage)


def _compute(cfg: ScoreConfig, source, dist: DistInfo, stop: GracefulStop, summary: RunSummary, log):
    """What scores the windows (rmscore/score/compute.py): this process's Engine, or with --ray a pool
    of Ray actors holding the same Engine. Either way this process alone reads and writes."""
    check = partial(check_steps_input, source.columns, cfg)  # picklable: a Ray actor runs it too
    if cfg.ray is not None:
        from rmscore.ray.pool import RayPool

        return RayPool.start(cfg, summary, check, stop.check, log)
    from rmscore.score.compute import LocalCompute
    from rmscore.score.engine import Engine

    device = group.local_device(dist, cfg.model.device, cfg.model.device_map)
    return LocalCompute(Engine.load(replace(cfg.model, device=device), cfg.batch, summary, check=check,
                                    check_stop=stop.check, log=log))


def _keep_finished(sink, compute, log) -> None:
    """Whatever stopped the run (a signal, an exception, Ctrl-C): close the part being written with
    the finished windows, and save the rows of the window in flight whose batches finished, so a
    stop loses at most the batch that was running. A sink whose writer failed (a full disk)
    writes nothing more: its part is discarded and the finished parts stand."""
    try:
        sink.salvage(compute.finished())
    except Exception as exc:  # never hide the failure that got us here
        log(f"could not save the rows in flight: {exc}")


def _loop(compute, sink, samples: Iterator[Sample], cfg: ScoreConfig, summary: RunSummary, dist) -> None:
    progress = Progress(total=None, enabled=cfg.progress, quiet=not dist.is_main)
    loop_start = time.perf_counter()
    try:
        # A signal raises Interrupted between batches (or between input rows, in the reader); the
        # caller then saves the finished windows and whatever came back of the others (_keep_finished).
        for rows in compute.windows(chunked(samples, cfg.batch.window), progress.update):
            sink.write(rows)
        sink.close()
    finally:
        progress.close()
        summary.loop_s = time.perf_counter() - loop_start
