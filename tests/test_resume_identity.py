"""Resume notices a changed input: appended rows are scored (and said so), changed or removed
rows refuse the run with one line, and a lower --limit never leaves more rows than it asks for."""

import json
import os

import pytest

from scored import assert_same_rows, keys_of, rows_of
from tiny import completions_rows
from cli_runner import invoke

SMALL = ("--rows-per-part", "8", "--window", "8", "--no-progress")


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def forbid_loading(monkeypatch):
    """From here on, loading a model fails the test: refusals must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("rmscore.models.load_model", refuse)


@pytest.fixture
def job(tiny_models, tmp_path):
    rows = completions_rows(n_prompts=30, n_completions=2, seed=3, long_tail=False)
    path = tmp_path / "gens.jsonl"

    def score(*extra):
        return invoke("score", path, "-m", tiny_models["llama"], "-o", tmp_path / "out", *SMALL, *extra)

    return {"rows": rows, "path": path, "out": tmp_path / "out", "score": score}


def test_appended_rows_are_scored_and_said(job, tmp_path, tiny_models):
    write(job["path"], job["rows"][:20])
    assert job["score"]().exit_code == 0
    write(job["path"], job["rows"])  # 10 more prompts: the on-policy loop appends
    again = job["score"]()
    assert again.exit_code == 0, again.output
    assert "the input changed since the last run (gens.jsonl went from" in again.output
    assert "the 40 rows scored before are unchanged: scoring the new rows" in again.output
    assert "resumed: 40 completions" in again.output
    reference = tmp_path / "reference"
    assert invoke("score", job["path"], "-m", tiny_models["llama"], "-o", reference, *SMALL).exit_code == 0
    assert_same_rows(rows_of(job["out"]), rows_of(reference))
    merged = invoke("merge", job["out"], "-o", tmp_path / "merged.parquet")
    assert merged.exit_code == 0 and "Merged 60 rows" in merged.output


def test_replaced_completions_refuse_before_the_model_loads(job, monkeypatch):
    write(job["path"], job["rows"][:20])
    assert job["score"]("--limit", 10).exit_code == 0
    before = {p.name: p.read_bytes() for p in job["out"].glob("part-*")}
    regenerated = [{**r, "completions": [c + " (new sample)" for c in r["completions"]]} for r in job["rows"][:20]]
    write(job["path"], regenerated)  # same prompts, new completions, same file
    forbid_loading(monkeypatch)
    refused = job["score"]()
    assert refused.exit_code == 2, refused.output
    message = refused.output.splitlines()[0]
    assert "input rows 0-3 are not the rows scored into part-00000-of-00001-00000.parquet" in message
    assert "the input changed since they were scored (gens.jsonl went from" in message
    assert {p.name: p.read_bytes() for p in job["out"].glob("part-*")} == before
    assert job["score"]().exit_code == 2  # and again: the stamp is only recorded once the rows check


def test_an_identical_rewrite_stays_finished(job, monkeypatch):
    write(job["path"], job["rows"])
    assert job["score"]().exit_code == 0
    write(job["path"], job["rows"])  # a new mtime, the same rows
    forbid_loading(monkeypatch)
    again = job["score"]()
    assert again.exit_code == 0, again.output
    assert "but holds the same rows" in again.output and "already complete" in again.output


def test_removed_rows_refuse(job, monkeypatch):
    write(job["path"], job["rows"])
    assert job["score"]().exit_code == 0
    write(job["path"], job["rows"][:25])
    refused = job["score"]()
    assert refused.exit_code == 2 and "the input no longer holds all of rows" in refused.output, refused.output


def test_a_changed_row_behind_an_unchanged_stamp_refuses_while_resuming(job):
    """A same-size edit past the first 64 KiB with the mtime put back (cp -p, rsync -t): the stamp
    cannot see it, the digests of the finished parts' rows do."""
    rows = [dict(r) for r in job["rows"]]
    rows[0]["padding"] = "x" * 70_000  # an ignored column pushes rows 1.. past the stamp's head
    write(job["path"], rows)
    assert job["score"]("--limit", 12).exit_code == 0
    stat = os.stat(job["path"])
    text = job["path"].read_text()
    old = rows[3]["completions"][1]
    new = ("Z" if old[0] != "Z" else "Y") + old[1:]
    write(job["path"], [*rows[:3], {**rows[3], "completions": [rows[3]["completions"][0], new]}, *rows[4:]])
    assert len(job["path"].read_text()) == len(text)
    os.utime(job["path"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    refused = job["score"]()
    assert refused.exit_code == 2 and "are not the rows scored into" in refused.output, refused.output


def test_a_lower_limit_after_a_finished_run_refuses(job, tmp_path, monkeypatch):
    write(job["path"], job["rows"])
    assert job["score"]("--limit", 4).exit_code == 0
    forbid_loading(monkeypatch)
    refused = job["score"]("--limit", 1)
    assert refused.exit_code == 2 and "more than --limit 1 allows" in refused.output, refused.output
    assert "already holds scores for input rows up to 3" in refused.output
    # The folder still says what it holds, and merge agrees with it.
    marker = json.loads((job["out"] / ".rmscore" / "done-00000-of-00001.json").read_text())
    merged = invoke("merge", job["out"], "-o", tmp_path / "merged.parquet")
    assert merged.exit_code == 0 and marker["limit"] == 4 and marker["rows"] == 8
    assert keys_of(rows_of(tmp_path / "merged.parquet")) == [(i, j) for i in range(4) for j in range(2)]
