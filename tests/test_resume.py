"""A scoring run killed part-way (SIGTERM, SIGKILL) and rerun gives exactly the uninterrupted output."""

import json
import signal
import subprocess
import time

import pytest

from scored import PYTHON, assert_same_rows, keys_of, rows_of, subprocess_env
from tiny import completions_rows
from cli_runner import invoke

# Each forward sleeps a little, so a run is still going when the test's signal arrives.
SLOW_CLI = (
    "import time, rmscore.score.forward as f\n"
    "score = f.PaddedForward.score\n"
    "f.PaddedForward.score = lambda self, batch: (time.sleep(0.04), score(self, batch))[1]\n"
    "from rmscore.cli import main\n"
    "main()\n"
)
SMALL = ("--rows-per-part", "12", "--window", "6", "--max-batch-size", "2", "--no-progress")


@pytest.fixture(scope="module")
def job(tiny_models, tmp_path_factory):
    """The input, the model and the uninterrupted run's rows, shared by this module's tests."""
    root = tmp_path_factory.mktemp("resume")
    path = root / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in completions_rows(40, 4, seed=7)))
    args = ("score", path, "-m", tiny_models["llama"], *SMALL)
    result = invoke(*args, "-o", root / "reference")
    assert result.exit_code == 0, result.output
    return {"args": args, "reference": rows_of(root / "reference")}


def kill_part_way(job, out, sig) -> subprocess.CompletedProcess:
    """Start a slowed-down run and send `sig` once its first part file is finished."""
    cmd = [PYTHON, "-c", SLOW_CLI, *map(str, job["args"]), "-o", str(out)]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def check_consistent(out, lag=0):
    """Parts hold whole rows, each once, in input order; the manifest lists those parts (a SIGKILL
    right after a part's rename may leave it unlisted: `lag` 1, read back on the next start)."""
    manifest = json.loads(next((out / ".rmscore").glob("manifest-*.json")).read_text())
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    listed = sorted(rec["file"] for rec in manifest["parts"])
    assert listed == parts[: len(listed)] and len(parts) - len(listed) <= lag
    rows = rows_of(out)
    assert len(rows) == len(set(keys_of(rows)))
    if listed == parts:
        assert sum(rec["rows"] for rec in manifest["parts"]) == len(rows)
    return rows


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_to_the_same_output(job, tmp_path, sig):
    out = tmp_path / "out"
    killed = kill_part_way(job, out, sig)
    assert not (out / ".rmscore" / "done-00000-of-00001.json").exists(), "the kill landed after the end"
    if sig == signal.SIGTERM:
        assert killed.returncode == 75, killed.stderr
        assert "Stopped: stopped by SIGTERM after saving" in killed.stderr
        assert not list(out.glob(".tmp-*")), "a graceful stop finishes the part it was writing"
    else:
        assert killed.returncode == -signal.SIGKILL
    partial = check_consistent(out, lag=int(sig == signal.SIGKILL))
    want = job["reference"]
    assert 0 < len(partial) < len(want)
    manifest = json.loads((out / ".rmscore" / "manifest-00000-of-00001.json").read_text())
    exact = {key for rec in manifest["parts"] if rec.get("exact")
             for key in keys_of(rows_of(out / rec["file"]))}  # a stop keeps the window in flight's finished batches
    whole = [key for key in keys_of(partial) if key not in exact]
    assert whole == keys_of(want)[: len(whole)]  # whole windows are a prefix: nothing skipped
    assert exact <= set(keys_of(want)[len(whole): len(whole) + 6])  # and some rows of the next window (--window 6)
    assert sig == signal.SIGTERM or not exact
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}

    again = invoke(*job["args"], "-o", out)
    assert again.exit_code == 0, again.output
    assert f"resumed: {len(partial)} completions" in again.output
    assert not list(out.glob(".tmp-*"))
    assert_same_rows(check_consistent(out), want)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert all(after[name] == mtime for name, mtime in before.items())  # finished parts untouched
    assert min(int(n[-13:-8]) for n in set(after) - set(before)) > max(int(n[-13:-8]) for n in before)


def test_a_deleted_part_is_scored_again(job, tmp_path):
    out = tmp_path / "out"
    assert invoke(*job["args"], "-o", out).exit_code == 0
    parts = sorted(out.glob("part-*.parquet"))
    parts[2].unlink()
    merged = invoke("merge", out, "-o", tmp_path / "merged.parquet")
    assert merged.exit_code != 0 and parts[2].name in merged.output
    again = invoke(*job["args"], "-o", out)
    assert again.exit_code == 0 and "is missing" in again.output, again.output
    manifest = json.loads((out / ".rmscore" / "manifest-00000-of-00001.json").read_text())
    ranges = sorted((tuple(r["first"]), tuple(r["last"])) for r in manifest["parts"])
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), "parts overlap"
    assert invoke("merge", out, "-o", tmp_path / "merged.parquet").exit_code == 0
    assert_same_rows(rows_of(tmp_path / "merged.parquet"), job["reference"])


def test_other_settings_refuse_and_overwrite_starts_fresh(job, tmp_path, copy_model):
    out = tmp_path / "out"
    assert invoke(*job["args"], "-o", out).exit_code == 0
    refused = invoke(*job["args"], "-o", out, "--shard", "0/2")
    assert refused.exit_code == 2 and "shard count" in refused.output and "was 1, now 2" in refused.output
    refused = invoke(*job["args"], "-o", out, "--on-overflow", "truncate-left")
    assert refused.exit_code == 2 and "--on-overflow was 'skip', now 'truncate-left'" in refused.output
    fresh = invoke(*job["args"], "-o", out, "--on-overflow", "truncate-left", "--overwrite")
    assert fresh.exit_code == 0 and "resumed" not in fresh.output
    assert_same_rows(rows_of(out), job["reference"])  # no row too long: same numbers, rows once


def test_a_folder_scored_under_the_old_input_rules_refuses(job, tmp_path):
    """A folder whose manifest predates the input contract (JSON inside strings was decoded then) is
    not resumed: its rows may have been read as other texts than this rmscore reads."""
    out = tmp_path / "out"
    assert invoke(*job["args"], "-o", out, "--limit", "20").exit_code == 0
    manifest = next((out / ".rmscore").glob("manifest-*.json"))
    record = json.loads(manifest.read_text())
    del record["settings"]["input_contract"]
    manifest.write_text(json.dumps(record))
    refused = invoke(*job["args"], "-o", out)
    assert refused.exit_code == 2 and "input reading rules" in refused.output and "was None, now 2" in refused.output


def test_a_changed_checkpoint_refuses_after_loading(job, tmp_path, tiny_models, copy_model):
    """Same command, but the chat template in the checkpoint changed: caught by the resolved settings."""
    model = copy_model(tiny_models["llama"])
    args = [a if a != tiny_models["llama"] else model for a in job["args"]]
    out = tmp_path / "out"
    assert invoke(*args, "-o", out, "--limit", 3).exit_code == 0
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ bos_token }}" + (config.get("chat_template") or "")
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    for leftover in model.glob("chat_template.*"):
        leftover.unlink()
    refused = invoke(*args, "-o", out, "--limit", 5)
    assert refused.exit_code == 2 and "chat template was" in refused.output, refused.output


def test_limit_raised_continues(job, tmp_path):
    out = tmp_path / "out"
    assert invoke(*job["args"], "-o", out, "--limit", 10).exit_code == 0
    more = invoke(*job["args"], "-o", out)
    assert more.exit_code == 0 and "resumed: 40 completions" in more.output
    assert_same_rows(rows_of(out), job["reference"])


def test_a_requeued_job_ignores_overwrite(job, tmp_path):
    out = tmp_path / "out"
    assert invoke(*job["args"], "-o", out, "--limit", 10).exit_code == 0
    requeued = invoke(*job["args"], "-o", out, "--overwrite", env={"SLURM_RESTART_COUNT": "1", "RMSCORE_DEBUG": ""})
    assert requeued.exit_code == 0 and "--overwrite ignored" in requeued.output
    assert "resumed: 40 completions" in requeued.output


def test_a_changed_input_refuses(job, tmp_path):
    path, out = tmp_path / "input.jsonl", tmp_path / "out"
    rows = completions_rows(40, 4, seed=7)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["score", path, *job["args"][2:]]
    assert invoke(*args, "-o", out, "--limit", 10).exit_code == 0
    rows[0]["prompt"] = "a different first question"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refused = invoke(*args, "-o", out)
    assert refused.exit_code == 2 and "the input changed" in refused.output, refused.output
