"""Cluster-grade sharding (issue 17): srun tasks, one array task run again, concurrent --overwrite,
the layout recorded at start, merge and --limit, a missing worker, every worker's totals, and
torchrun exiting cleanly. SLURM is simulated by its environment and stand-ins on PATH."""

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rmscore.distributed import group
from rmscore.distributed.env import DistInfo, dist_info
from rmscore.errors import ConfigError, ResumeConflict
from rmscore.store import resume
from scored import PYTHON, REPO, assert_same_rows, rows_of, subprocess_env
from tiny import completions_rows
from cli_runner import invoke


def array_env(task, count, low=0, step=1):
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(low + (count - 1) * step),
            "SLURM_ARRAY_TASK_STEP": str(step)}


def srun_env(procid, tasks):
    """What srun sets in each task of a step (SLURM_STEP_NUM_TASKS only srun sets)."""
    return {"SLURM_PROCID": str(procid), "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_NTASKS": str(tasks),
            "SLURM_STEP_ID": "0"}


def torchrun_env(rank, world, local_world):
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank % local_world),
            "LOCAL_WORLD_SIZE": str(local_world)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    path = root / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in completions_rows(16, 3, seed=11)))
    args = ("score", path, "-m", tiny_models["llama"], "--rows-per-part", "8", "--no-progress")
    assert invoke(*args, "-o", root / "single").exit_code == 0
    return {"args": args, "input": path, "model": tiny_models["llama"], "reference": rows_of(root / "single")}


def parts(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}


# 1. srun with several tasks shards the data

@pytest.mark.parametrize("environ, index, count, source", [
    (srun_env(1, 4), 1, 4, "srun"),
    ({**array_env(2, 3), **srun_env(1, 2)}, 5, 6, "SLURM array x srun"),
    # one standalone torchrun per srun task: workers split each task's shard
    ({**srun_env(1, 2), **torchrun_env(1, 2, 2)}, 3, 4, "srun x torchrun"),
    # multi-node torchrun launched by srun: RANK already numbers every worker of every task
    ({**srun_env(1, 2), **torchrun_env(3, 4, 2)}, 3, 4, "torchrun"),
    # ranks exported by hand from SLURM_PROCID: the same level, counted once
    ({**srun_env(1, 2), "RANK": "1", "WORLD_SIZE": "2"}, 1, 2, "torchrun"),
    # the batch script of a --ntasks=4 job: SLURM_NTASKS=4 and SLURM_PROCID=0, but no srun step
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7"}, 0, 1, "single process"),
])
def test_srun_tasks_split_the_task_level(environ, index, count, source):
    dist = dist_info(environ=environ)
    assert (dist.shard_index, dist.shard_count, dist.source) == (index, count, source)


def test_srun_tasks_score_their_own_shards(job, tmp_path):
    out = tmp_path / "out"
    for task in (0, 1):
        result = invoke(*job["args"], "-o", out, env=srun_env(task, 2))
        assert result.exit_code == 0 and f"shard {task}/2 (srun)" in result.output, result.output
    assert invoke("merge", out, "-o", tmp_path / "merged.parquet").exit_code == 0
    assert_same_rows(rows_of(tmp_path / "merged.parquet"), job["reference"])


@pytest.mark.slow
def test_srun_with_two_tasks_started_together_scores_each_row_once(job, tmp_path):
    """A stand-in srun on PATH starts both tasks at once, as SLURM does."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        "n=1\n"
        'while [[ $1 == -* ]]; do case $1 in -n) n=$2; shift 2;; --ntasks=*) n=${1#*=}; shift;; *) shift;; esac; done\n'
        "for ((i = 0; i < n; i++)); do\n"
        '  SLURM_PROCID=$i SLURM_STEP_NUM_TASKS=$n SLURM_NTASKS=$n SLURM_STEP_ID=0 "$@" &\n'
        "done\n"
        "rc=0; for p in $(jobs -p); do wait $p || rc=$?; done; exit $rc\n"
    )
    (bin_dir / "srun").chmod(0o755)
    env = subprocess_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    run = subprocess.run(["srun", "--ntasks=2", PYTHON, "-m", "rmscore", *map(str, job["args"]), "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "shard 0/2 (srun)" in run.stderr and "shard 1/2 (srun)" in run.stderr, run.stderr
    assert run.stderr.count("Scored ") == 2  # each task reports its own shard, as array tasks do
    assert invoke("merge", out, "-o", tmp_path / "merged.parquet").exit_code == 0
    assert_same_rows(rows_of(tmp_path / "merged.parquet"), job["reference"])


# 2. one array task run again, alone; --overwrite never deletes other shards' rows

@pytest.mark.parametrize("low, step", [(0, 1), (10, 2)])
def test_one_array_task_resubmitted_alone_finds_its_shard(job, tmp_path, low, step):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    for task in (0, 1, 3):
        assert invoke(*job["args"], "-o", out, env=array_env(low + task * step, 4, low, step)).exit_code == 0
    early = invoke("merge", out, "-o", merged)
    assert early.exit_code == 2 and "1 of 4 shards have not finished: 2" in early.output, early.output
    assert "--shard 2/4" in early.output and f"sbatch --array={low + 2 * step} " in early.output, early.output
    before = parts(out)
    # `sbatch --array=N` runs an array of one task: SLURM says MIN = MAX = N and COUNT = 1
    alone = {**array_env(low + 2 * step, 1, low + 2 * step, 1), "SLURM_ARRAY_TASK_STEP": "1"}
    again = invoke(*job["args"], "-o", out, env=alone)
    assert again.exit_code == 0, again.output
    assert "shard 2/4" in again.output and "Scored " in again.output
    assert all(parts(out)[name] == mtime for name, mtime in before.items())  # nothing else touched
    requeued = invoke(*job["args"], "-o", out, env={**alone, "SLURM_RESTART_COUNT": "1"})  # the same task again
    assert requeued.exit_code == 0 and "Shard 2/4" in requeued.output and "already complete" in requeued.output, \
        requeued.output
    assert invoke("merge", out, "-o", merged).exit_code == 0
    assert_same_rows(rows_of(merged), job["reference"])


def folder_with_layout(tmp_path, shards: int, recorded: dict | None) -> Path:
    out = tmp_path / "out"
    (out / ".rmscore").mkdir(parents=True)
    manifest = {"settings": {}, "parts": [], "layout": recorded}
    (out / ".rmscore" / f"manifest-00000-of-{shards:05d}.json").write_text(json.dumps(manifest))
    return out


def lone(task_id, world=1, rank=0):
    from rmscore.distributed.env import ArrayTask

    return DistInfo(rank, world, "SLURM array" + (" x torchrun" if world > 1 else ""), rank, world, None, 0,
                    ArrayTask(task_id, task_id, 1, 1), world)


@pytest.mark.parametrize("task, recorded, overwrite, placed", [  # task: (SLURM id, workers, rank)
    ((2, 1, 0), {"shards": 4, "per_task": 1, "array": {"low": 0, "step": 1, "count": 4}}, False, (2, 4)),
    ((14, 1, 0), {"shards": 4, "per_task": 1, "array": {"low": 10, "step": 2, "count": 4}}, False, (2, 4)),
    ((1, 2, 1), {"shards": 8, "per_task": 2, "array": {"low": 0, "step": 1, "count": 4}}, False, (3, 8)),
    # not safe, so refused by layout.check:
    ((13, 1, 0), {"shards": 4, "per_task": 1, "array": {"low": 10, "step": 2, "count": 4}}, False, None),  # off step
    ((4, 1, 0), {"shards": 4, "per_task": 1, "array": {"low": 0, "step": 1, "count": 4}}, False, None),  # outside
    ((1, 1, 0), {"shards": 8, "per_task": 2, "array": {"low": 0, "step": 1, "count": 4}}, False, None),  # 1 worker, not 2
    ((2, 1, 0), {"shards": 4, "per_task": 1, "array": None}, False, None),  # made with --shard: no array to map onto
    # --overwrite may mean "start over as one shard": no placing (allowed here only as no rows are saved)
    ((2, 1, 0), {"shards": 4, "per_task": 1, "array": {"low": 0, "step": 1, "count": 4}}, True, None),
])
def test_a_lone_array_task_is_placed_only_where_that_is_safe(tmp_path, task, recorded, overwrite, placed):
    from rmscore.distributed import layout

    dist = lone(*task)
    out = folder_with_layout(tmp_path, recorded["shards"], recorded)
    got = layout.place(dist, out, resume.read_manifests(out), overwrite, log=lambda _: None)
    if placed:
        assert (got.shard_index, got.shard_count) == placed
        layout.check(got, out, overwrite)
        return
    assert got == dist
    if overwrite:
        layout.check(got, out, overwrite)
        (out / f"part-00000-of-{recorded['shards']:05d}-00000.parquet").write_bytes(b"rows")
    with pytest.raises(ResumeConflict, match=f"--shard INDEX/{recorded['shards']}"):
        layout.check(got, out, overwrite)


def test_overwrite_restarts_one_shard_and_never_deletes_other_shards_rows(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    for task in range(4):
        assert invoke(*job["args"], "-o", out, "--shard", f"{task}/4").exit_code == 0
    before = parts(out)
    # the old fix for a one-task resubmission: shard 0/1 with --overwrite
    refused = invoke(*job["args"], "-o", out, "--overwrite")
    assert refused.exit_code == 2, refused.output
    assert "--overwrite restarts this shard only" in refused.output and "delete the folder" in refused.output
    assert parts(out) == before
    again = invoke(*job["args"], "-o", out, "--shard", "2/4", "--overwrite")
    assert again.exit_code == 0, again.output
    after = parts(out)
    for name, mtime in before.items():
        assert (after.get(name) == mtime) != ("part-00002-of-00004" in name), name  # only shard 2 rewritten
    assert invoke("merge", out, "-o", merged).exit_code == 0
    assert_same_rows(rows_of(merged), job["reference"])


# 3. shards starting together with --overwrite

def test_overwrite_cleanup_tolerates_siblings_and_spares_their_new_files(tmp_path, monkeypatch):
    """Shard 0 of a new 3-shard run clears a folder whose old 2-shard run saved no rows, while its
    siblings clear the same leftovers and start their own parts."""
    out, meta = tmp_path / "out", tmp_path / "out" / ".rmscore"
    meta.mkdir(parents=True)
    leftovers = [out / ".tmp-part-00001-of-00002-00000.parquet", meta / "manifest-00000-of-00002.json",
                 meta / "manifest-00001-of-00002.json", meta / "stats-00001-of-00002.json",
                 meta / "manifest-00000-of-00003.json"]
    siblings = [out / ".tmp-part-00001-of-00003-00000.parquet", out / "part-00002-of-00003-00000.parquet",
                meta / "manifest-00001-of-00003.json", meta / ".tmp-manifest-00002-of-00003.json"]
    for path in leftovers + siblings:
        path.write_text("x")
    real_unlink = Path.unlink

    def sibling_first(self, missing_ok=False):
        if self.exists():
            os.remove(self)  # a sibling shard removed it between our listing and our unlink
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", sibling_first)
    resume.clear(out, "00000-of-00003", 3)
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in siblings)


# 4. the shard layout is recorded at start

def test_the_shard_count_binds_before_any_row_is_saved(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    for task in (0, 1):  # both shards stop before their first row (here: the model cannot load)
        stopped = invoke("score", job["input"], "-m", tmp_path / "no-model", "-o", out, "--shard", f"{task}/2")
        assert stopped.exit_code != 0
    assert len(list((out / ".rmscore").glob("manifest-*-of-00002.json"))) == 2 and not parts(out)
    other = invoke(*job["args"], "-o", out, "--shard", "0/3")
    assert other.exit_code == 2, other.output
    assert "started with 2 shards and holds no rows yet" in other.output and "--overwrite" in other.output
    for task in range(3):
        assert invoke(*job["args"], "-o", out, "--shard", f"{task}/3", "--overwrite").exit_code == 0
    done = invoke("merge", out, "-o", merged)
    assert done.exit_code == 0, done.output
    assert_same_rows(rows_of(merged), job["reference"])


# 6. merge and --limit

def test_merge_refuses_shards_that_read_different_limits(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    assert invoke(*job["args"], "-o", out, "--shard", "0/2", "--limit", "6").exit_code == 0
    assert invoke(*job["args"], "-o", out, "--shard", "1/2").exit_code == 0
    result = invoke("merge", out, "-o", merged)
    assert result.exit_code == 2 and not merged.exists(), result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "shard 0 with --limit 6" in error[0] and "shard 1 with no --limit" in error[0]


# 7. a missing worker

def test_a_missing_worker_fails_fast_in_one_line(job, tmp_path):
    env = {**torchrun_env(0, 2, 2), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "RMSCORE_RENDEZVOUS_TIMEOUT": "2"}
    start = time.monotonic()
    result = invoke(*job["args"], "-o", tmp_path / "out", env=env)
    assert time.monotonic() - start < 60
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "worker 0 of 2 waited 2 s for the others and gave up" in error[0], result.output
    assert "RMSCORE_RENDEZVOUS_TIMEOUT" in result.output


def test_the_rendezvous_timeout_must_be_positive():
    with pytest.raises(ConfigError, match="RMSCORE_RENDEZVOUS_TIMEOUT"):
        dist_info(environ={"RMSCORE_RENDEZVOUS_TIMEOUT": "soon"})
    assert dist_info(environ={"RMSCORE_RENDEZVOUS_TIMEOUT": "90"}).rendezvous_s == 90


def test_workers_meet_through_the_store_and_a_failed_one_is_not_waited_for(monkeypatch):
    import torch.distributed as td

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    got = {}

    def worker(rank):
        dist = DistInfo(rank, 3, "torchrun", rank, 3, rank, rendezvous_s=60)
        try:
            with group.joined(dist) as workers:
                if rank == 2:
                    raise RuntimeError("worker 2 failed")
                got[rank] = workers.gather({"rank": rank})
        except RuntimeError as exc:
            got[rank] = str(exc)

    threads = [threading.Thread(target=worker, args=(rank,)) for rank in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert got == {0: [{"rank": 0}, {"rank": 1}, None], 1: None, 2: "worker 2 failed"}
    assert not td.is_initialized()  # no process group for torch modules to hold on to


# 8. rank-0 totals are every worker's

def test_totals_are_every_workers_and_a_shard_counts_its_own_rows(job, tmp_path):
    from rmscore.cli.score import summary_lines
    from rmscore.config import InputConfig, ModelConfig, OutputConfig, ScoreConfig, ShardConfig
    from rmscore.score.run import run_score

    def run(index, out="out"):
        return run_score(ScoreConfig(InputConfig(str(job["input"])), OutputConfig(str(tmp_path / out), False, 8),
                                     ModelConfig(path=str(job["model"])), shard=ShardConfig(index, 2),
                                     progress=False), log=lambda _: None)

    first, second = run(0), run(1)
    total_rows, total = len({r["input_index"] for r in job["reference"]}), len(job["reference"])
    assert first.rows_read + second.rows_read == total_rows and 0 < first.rows_read < total_rows  # issue 19.10
    first.absorb(second)
    text = "\n".join(summary_lines(first))
    assert f"Scored {total} of {total} completions from {total_rows} input rows" in text
    assert sum(int(n) for n in re.findall(r"\((\d+) rows\)", first.forward_path)) == total, first.forward_path
    # a worker whose shard an earlier --shard run finished loads nothing: the totals still name it all
    run(0, "again")
    done, later = run(0, "again"), run(1, "again")
    assert done.complete and not later.complete
    done.absorb(later)
    text = "\n".join(summary_lines(done))
    assert "with seq-cls." in text and "forward: ;" not in text and "1 of 2 workers' shards were already complete" in text


# 9. only SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT

@pytest.mark.parametrize("environ, index, count", [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, 0, 2),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, 1, 2),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MAX": "1"}, 1, 2),
])
def test_missing_array_bounds_are_derived_the_same_way_for_every_task(environ, index, count):
    dist = dist_info(environ=environ)
    assert (dist.shard_index, dist.shard_count) == (index, count)


def test_an_array_task_outside_its_count_is_refused():
    with pytest.raises(ConfigError, match="does not map to a shard"):
        dist_info(environ={"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2"})


# 10. nothing outlives the run

def test_prefetch_stops_and_joins_its_thread_when_the_consumer_stops():
    from rmscore.score.pipeline import prefetch

    def slow():
        for i in range(100):
            time.sleep(0.2)  # like tokenizing the next window
            yield i

    items = prefetch(slow(), depth=1)
    assert next(items) == 0
    items.close()  # the consumer stops early (an exception, a signal)
    assert not [t for t in threading.enumerate() if t.name == "rmscore-prefetch"]


class Starver(threading.Thread):
    """Puts every thread but the main one of each torchrun worker at nice 19, every few ms: a
    busy machine in miniature, where helper threads lag behind the main thread at exit."""

    def __init__(self, launcher: int):
        super().__init__(daemon=True)
        self.launcher, self.done = launcher, threading.Event()

    def run(self):
        while not self.done.wait(0.005):
            for worker in _children(self.launcher):
                for tid in _listdir(f"/proc/{worker}/task"):
                    if int(tid) != worker:
                        try:
                            os.setpriority(os.PRIO_PROCESS, int(tid), 19)
                        except OSError:
                            pass  # the thread ended meanwhile


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_torchrun_runs_exit_cleanly_every_time_on_a_starved_machine(tmp_path):
    """The issue's command, 30 times. On main its leaked gloo threads, starved like this, made
    a finished worker abort at exit (SIGABRT, "terminate called without an active exception")."""
    failures = []
    for i in range(30):
        cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "rmscore",
               "score", str(REPO / "data" / "demo" / "hh_rlhf_demo.jsonl"), "-o", str(tmp_path / f"out{i}")]
        run = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        starver = Starver(run.pid)
        starver.start()
        output, _ = run.communicate(timeout=900)
        starver.done.set()
        if run.returncode != 0 or "terminate called" in output:
            failures.append(f"run {i}: exit {run.returncode}\n{output[-1500:]}")
    assert not failures, f"{len(failures)} of 30 runs failed:\n" + "\n".join(failures[:2])
