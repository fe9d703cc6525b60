"""Shards from --shard, SLURM arrays and torchrun; merge checks completeness and drops duplicates."""

import json
import re
import shutil
import subprocess

import pytest

from rmscore.distributed.env import dist_info
from rmscore.errors import ConfigError
from scored import PYTHON, assert_same_rows, rows_of, subprocess_env
from tiny import completions_rows
from cli_runner import invoke


def array_env(task, count, low=0, step=1):
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(low + (count - 1) * step),
            "SLURM_ARRAY_TASK_STEP": str(step)}


@pytest.mark.parametrize("environ, index, count", [
    ({}, 0, 1),
    (array_env(3, 4), 3, 4),
    (array_env(8, 4, step=4), 2, 4),  # --array=0-12:4 runs tasks 0, 4, 8, 12
    (array_env(12, 3, low=10, step=2), 1, 3),  # --array=10-14:2
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 1, 2),
    # data-parallel workers inside an array task: task * world + rank of tasks * world
    ({**array_env(2, 3), "RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, 9, 12),
])
def test_shard_from_the_environment(environ, index, count):
    dist = dist_info(environ=environ)
    assert (dist.shard_index, dist.shard_count) == (index, count)
    assert dist.is_main == ("RANK" not in environ or environ["RANK"] == "0")


def test_explicit_shard_and_requeue_count():
    environ = {**array_env(1, 2), "SLURM_RESTART_COUNT": "2"}
    dist = dist_info(3, 5, environ=environ)
    assert (dist.shard_index, dist.shard_count, dist.source, dist.restarts) == (3, 5, "--shard", 2)
    assert dist_info(environ={"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}).local_rank == 1


@pytest.mark.parametrize("environ", [
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
     "SLURM_ARRAY_TASK_MAX": "6"},  # --array=1,5,6: no dense index
    {"SLURM_ARRAY_TASK_ID": "1"},
])
def test_slurm_arrays_that_do_not_map_refuse(environ):
    with pytest.raises(ConfigError, match="--shard INDEX/COUNT"):
        dist_info(environ=environ)


@pytest.fixture(scope="module")
def job(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    path = root / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in completions_rows(16, 3, seed=11)))
    args = ("score", path, "-m", tiny_models["llama"], "--rows-per-part", "8", "--no-progress")
    assert invoke(*args, "-o", root / "single").exit_code == 0
    return {"args": args, "reference": rows_of(root / "single")}


def test_slurm_array_shards_merge_to_the_single_run(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    first = invoke(*job["args"], "-o", out, env=array_env(0, 2))
    assert first.exit_code == 0 and "shard 0/2 (SLURM array)" in first.output, first.output
    early = invoke("merge", out, "-o", merged)
    assert early.exit_code == 2 and "1 of 2 shards have not finished: 1" in early.output
    assert not merged.exists()
    assert invoke(*job["args"], "-o", out, env=array_env(1, 2)).exit_code == 0
    shards = rows_of(out)
    assert_same_rows(shards, job["reference"])  # the folder itself reads as one dataset
    assert 0 < len(list(out.glob("part-00001-of-00002-*"))) < len(list(out.glob("part-*")))
    done = invoke("merge", out, "-o", merged)
    assert done.exit_code == 0, done.output
    assert_same_rows(rows_of(merged), job["reference"])
    assert [r["input_index"] for r in rows_of(merged)] == sorted(r["input_index"] for r in rows_of(merged))


def test_torchrun_workers_merge_to_the_single_run(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "rmscore",
           *map(str, job["args"]), "-o", str(out)]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("Scored ") == 1, run.stderr  # rank 0 reports, for both workers
    assert f"Scored {len(job['reference'])} of {len(job['reference'])}" in run.stderr
    assert "2 data-parallel workers" in run.stderr
    forward = re.search(r"forward: (.*?);", run.stderr).group(1)  # every worker's rows, not rank 0's
    assert sum(int(n) for n in re.findall(r"\((\d+) rows\)", forward)) == len(job["reference"]), forward
    assert sorted(p.name for p in (out / ".rmscore").glob("done-*")) == [
        "done-00000-of-00002.json", "done-00001-of-00002.json"]
    assert invoke("merge", out, "-o", merged).exit_code == 0
    assert_same_rows(rows_of(merged), job["reference"])


def test_merge_drops_duplicates_and_checks_its_target(job, tmp_path):
    out, merged = tmp_path / "out", tmp_path / "merged.parquet"
    for task in (0, 1):
        assert invoke(*job["args"], "-o", out, "--shard", f"{task}/2").exit_code == 0
    part = sorted(out.glob("part-00001-of-00002-*"))[0]
    copy = out / "part-00001-of-00002-00099.parquet"  # e.g. a part copied back by hand
    shutil.copy(part, copy)
    result = invoke("merge", out, "-o", merged)
    assert result.exit_code == 0, result.output
    assert f"({len(rows_of(part))} duplicate rows dropped)" in result.output
    assert_same_rows(rows_of(merged), job["reference"])
    assert invoke("merge", out, "-o", merged).exit_code == 2  # exists: needs --overwrite
    assert invoke("merge", out, "-o", merged, "--overwrite").exit_code == 0
    inside = invoke("merge", out, "-o", out / "all.parquet")
    assert inside.exit_code == 2 and "inside" in inside.output


def test_a_shard_folder_reads_as_one_input(job, tmp_path):
    """rmscore's own readers skip what pyarrow.dataset skips: parts being written, .rmscore/."""
    from rmscore.read.sources import open_source

    out = tmp_path / "out"
    for task in (0, 1):
        assert invoke(*job["args"], "-o", out, "--shard", f"{task}/2").exit_code == 0
    (out / ".tmp-part-00000-of-00002-00042.parquet").write_bytes(b"half a file")
    source = open_source(str(out))
    assert sum(1 for _ in source.rows()) == len(job["reference"])


def test_scoring_leaves_float32_matmuls_exact(job):
    """rmscore never turns TF32 on (a user's --dtype float32 must give float32 numbers on a GPU)."""
    import torch

    assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.gpu
def test_device_map_auto_on_gpu_gives_the_cpu_scores(job, tmp_path):
    import torch

    # The job's own reference ran on the default device, which is CUDA in bf16 where a GPU is
    # (the first device check compared those to float32 at 1e-5 and failed). Score on the CPU.
    cpu, out = tmp_path / "cpu", tmp_path / "out"
    assert invoke(*job["args"], "-o", cpu, "--device", "cpu", "--dtype", "float32").exit_code == 0
    result = invoke(*job["args"], "-o", out, "--device-map", "auto", "--dtype", "float32")
    assert result.exit_code == 0 and "on cuda" in result.output, result.output
    assert not torch.backends.cuda.matmul.allow_tf32
    # Other kernels (cuBLAS, sdpa's CUDA kernels) sum in another order: float32 rounding, no more.
    assert_same_rows(rows_of(out), rows_of(cpu), tol=1e-4)
