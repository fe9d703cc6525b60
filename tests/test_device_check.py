"""bench/device_check.sh --dry-run: the device check's every step, at tiny sizes on CPU, so the
script a GPU session runs once never rots."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "bench/device_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "device-check.json").read_text())
    status = {s["step"]: s["status"] for s in report["steps"]}
    assert status.pop("serve") in ("ok", "skipped")  # only where bench/serve.py exists
    assert status == {"env": "ok", "pytest": "ok", "checkpoint-tiny": "ok", "doctor-tiny": "ok", "invariant-tiny": "ok",
                      "bench": "ok"}
    assert report["dry_run"] and report["environment"]["packages"]["torch"]
    doctor = next(s for s in report["steps"] if s["step"] == "doctor-tiny")
    assert any(line.startswith("batching: PASS") for line in doctor["log_tail"])
    invariant = next(s for s in report["steps"] if s["step"] == "invariant-tiny")
    assert any(line.startswith("batch invariance: PASS") for line in invariant["log_tail"])
    rows = {r["scorer"]: r for r in report["bench"][0]["rows"]}
    assert set(rows) == {"per-example", "rmscore-auto"} and rows["rmscore-auto"]["max_abs_diff"] < 1e-4
    markdown = (tmp_path / "device-check.md").read_text()
    assert "| doctor-tiny | ok |" in markdown and "bench-tiny" in markdown


def test_verify_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    """bench/device_verify.sh, the short rerun after the first device check, at tiny sizes on CPU."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "DEVICE_VERIFY_SECONDS": "600"}  # a shared CPU is slower than the GPU the limits are for
    result = subprocess.run(["bash", "bench/device_verify.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "device-verify.json").read_text())
    assert {s["step"]: s["status"] for s in report["steps"]} == {
        "env": "ok", "pytest": "ok", "checkpoint": "ok", "doctor": "ok", "bench": "ok"}
    doctor = next(s for s in report["steps"] if s["step"] == "doctor")
    assert any(line.startswith("batching: PASS") for line in doctor["log_tail"])
    rows = {r["scorer"]: r for r in report["bench"][0]["rows"]}
    assert set(rows) == {"per-example", "rmscore-packed"} and rows["rmscore-packed"]["max_abs_diff"] < 1e-4
    assert report["bench"][0]["complete"]
