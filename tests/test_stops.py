"""Whatever stops a run part-way keeps the finished work, and a rerun completes it exactly.

A stop (SIGTERM/SIGUSR1) or an exception in the middle of a window saves every batch that came
back, not only whole windows; a full disk while writing a part stops with one line and leaves the
finished parts as they were. In each case a rerun gives the uninterrupted run's rows, each once.
"""

import errno
import json
import os
import signal

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import rmscore.score.scorer
from rmscore.cli import app
from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from rmscore.errors import Interrupted
from rmscore.score.run import run_score
from scored import assert_same_rows, keys_of, rows_of
from tiny import completions_rows

# One window holds every row; batches of at most 4 rows: a stop lands mid-window.
BATCH = dict(max_batch_size=4, window=1000, forward="padded")


@pytest.fixture(scope="module")
def job(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("stops")
    path = root / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in completions_rows(12, 4, seed=3)))
    reference = root / "reference"
    run_score(config(path, tiny_models["llama"], reference), log=lambda *_: None)
    return {"input": path, "model": tiny_models["llama"], "reference": rows_of(reference)}


def config(path, model, out, **batch) -> ScoreConfig:
    return ScoreConfig(input=InputConfig(str(path)), output=OutputConfig(str(out), rows_per_part=1000),
                       model=ModelConfig(str(model)), batch=BatchConfig(**{**BATCH, **batch}), progress=False)


def stop_at_batch(monkeypatch, k: int, action) -> dict:
    """Run `action` when the k-th batch starts; count the rows of the batches that came back."""
    forward, seen = rmscore.score.scorer.Scorer._forward, {"batches": 0, "rows": 0}

    def counting(self, runner, batch, inputs, *rest):
        seen["batches"] += 1
        if seen["batches"] == k:
            action()
        out = forward(self, runner, batch, inputs, *rest)
        seen["rows"] += len(batch)
        return out

    monkeypatch.setattr(rmscore.score.scorer.Scorer, "_forward", counting)
    return seen


def rerun_completes(job, out, saved):
    again = run_score(config(job["input"], job["model"], out), log=lambda *_: None)
    assert again.skipped == len(saved)  # nothing saved was scored twice
    assert_same_rows(rows_of(out), job["reference"])
    merged = out.parent / "merged.parquet"
    assert CliRunner().invoke(app, ["merge", str(out), "-o", str(merged)]).exit_code == 0
    assert_same_rows(pq.read_table(merged).to_pylist(), job["reference"])


def test_a_stop_loses_at_most_the_batch_in_flight(job, tmp_path, monkeypatch):
    """SIGTERM arrives during the 4th batch of the only window: the 4 batches that ran are saved
    (main dropped the whole window and saved nothing)."""
    out = tmp_path / "out"
    seen = stop_at_batch(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Interrupted):
        run_score(config(job["input"], job["model"], out), log=lambda *_: None)
    monkeypatch.undo()
    saved = rows_of(out)
    assert seen["batches"] == 4 and len(saved) == seen["rows"] > 0  # the batch in flight finished, and is kept
    assert all(r["status"] == "ok" for r in saved)
    want = {k: r for k, r in zip(keys_of(job["reference"]), job["reference"])}
    assert_same_rows(saved, [want[k] for k in keys_of(saved)])
    manifest = json.loads((out / ".rmscore" / "manifest-00000-of-00001.json").read_text())
    assert [p.get("exact") for p in manifest["parts"]] == [True]  # not a contiguous run: keys read back
    rerun_completes(job, out, saved)


def test_an_exception_keeps_the_finished_windows_and_batches(job, tmp_path, monkeypatch):
    """A failure in the 8th batch (windows of 8 rows): the finished windows and the batches of the
    window in flight are saved (main discarded the part being written: nothing saved)."""
    out = tmp_path / "out"

    def boom():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    seen = stop_at_batch(monkeypatch, 8, boom)
    with pytest.raises(RuntimeError, match="illegal memory"):
        run_score(config(job["input"], job["model"], out, window=8), log=lambda *_: None)
    monkeypatch.undo()
    saved = rows_of(out)
    assert len(saved) == seen["rows"] and len(saved) >= 8
    assert not list(out.glob(".tmp-*"))
    rerun_completes(job, out, saved)


def test_a_full_disk_stops_with_one_line_and_the_rerun_resumes(job, tmp_path, monkeypatch):
    out = tmp_path / "out"
    writes, write_table = {"n": 0}, pq.ParquetWriter.write_table

    def full(self, table, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_table(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    args = ["score", job["input"], "-m", job["model"], "-o", out, "--window", 8, "--rows-per-part", 16,
            "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": ""})
    monkeypatch.undo()
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "no space left" in errors[0] and "rerun the same command" in result.output
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 1 and pq.read_metadata(parts[0]).num_rows == 16  # the finished part, intact
    assert not list(out.glob(".tmp-*"))  # the part being written is gone, not left half-written
    rerun_completes(job, out, rows_of(out))
