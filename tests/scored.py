"""Helpers for tests that compare scored outputs: read them in key order, compare them row by row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-5  # scores of the same row in batches of other shapes differ by float rounding only


def rows_of(path: Path) -> list[dict]:
    """Every row of a scored folder (all shards) or merged file, sorted by row key."""
    table = ds.dataset(str(path)).to_table() if Path(path).is_dir() else pq.read_table(path)
    return table.sort_by([("input_index", "ascending"), ("completion_index", "ascending")]).to_pylist()


def keys_of(rows: list[dict]) -> list[tuple[int, int]]:
    return [(r["input_index"], r["completion_index"]) for r in rows]


def assert_same_rows(got: list[dict], want: list[dict], tol: float = TOL) -> None:
    """Same rows, each once, same values; scores equal up to float rounding (`tol`)."""
    assert len(set(keys_of(got))) == len(got), "duplicated rows"
    assert keys_of(got) == keys_of(want), "missing or extra rows"
    for g, w in zip(got, want):
        g, w = dict(g), dict(w)
        assert abs(g["score"] - w["score"]) < tol, (g, w)
        g.pop("score"), w.pop("score")
        assert g == w


def subprocess_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    return env | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                  "TRANSFORMERS_VERBOSITY": "error"} | extra


PYTHON = sys.executable


# A fresh, small wrapper process runs the command and reads its peak RSS: a child's ru_maxrss
# starts from the high-water mark of the process it was forked from, so measuring from pytest
# itself would report pytest's size for any command smaller than it.
_PEAK = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1] + ".err", "w"))
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
open(sys.argv[1], "w").write(json.dumps({"code": code, "peak_mib": peak / 1024}))
"""


def peak_rss_mib(argv: list[str], scratch: Path, timeout: float = 600) -> float:
    """Runs argv (with subprocess_env) and returns its peak RSS in MiB; fails with its stderr."""
    result = scratch / "peak.json"
    subprocess.run([PYTHON, "-c", _PEAK, str(result), *argv], env=subprocess_env(), timeout=timeout, check=True)
    done = json.loads(result.read_text())
    assert done["code"] == 0, Path(str(result) + ".err").read_text()[-3000:]
    return done["peak_mib"]
