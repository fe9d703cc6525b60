"""What each kind of stop loses: rows whose forward had finished but that a rerun must score again.

    python bench/stop_loss.py                                  # default settings (window 8192, 50k rows/part)
    python bench/stop_loss.py --window 64 --rows-per-part 160  # several windows and parts

Scores INPUT (default: the demo data, 400 completions, with the demo model) once without a stop, then
once per kind of stop, each in a child `rmscore score` whose forward sleeps a little so the stop lands
mid-run, after about half the batches (--at): SIGTERM, SIGUSR1, SIGKILL, an exception raised in the
forward, and ENOSPC raised by the Parquet writer. The child appends its count of finished rows to a
file after every batch; lost = finished - saved in finished parts. Each stopped run is then rerun
to completion and compared with the uninterrupted one: every row once, the same scores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import errno, os, sys, time
import pyarrow.parquet as pq
import rmscore.score.scorer as scorer
kind, at, counter = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state = {"batches": 0, "rows": 0}
forward = scorer.Scorer._forward

def slow(self, runner, batch, inputs):
    state["batches"] += 1
    if kind == "exception" and state["batches"] == at:
        raise RuntimeError("injected failure in the forward")
    time.sleep(0.05)
    out = forward(self, runner, batch, inputs)
    state["rows"] += len(batch)
    with open(counter, "a") as f:
        f.write(f"{state['batches']} {state['rows']}\\n")
    return out

write_table = pq.ParquetWriter.write_table

def full(self, table, *args, **kwargs):
    if kind == "enospc" and state["batches"] >= at:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write_table(self, table, *args, **kwargs)

scorer.Scorer._forward, pq.ParquetWriter.write_table = slow, full
sys.argv = ["rmscore", *sys.argv[4:]]
from rmscore.cli import main
main()
"""


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "RMSCORE_DEBUG": ""}


def finished(counter: Path) -> tuple[int, int]:
    lines = counter.read_text().split() if counter.exists() else []
    return (int(lines[-2]), int(lines[-1])) if lines else (0, 0)


def saved(out: Path) -> list[tuple[int, int]]:
    if not list(out.glob("part-*.parquet")):
        return []
    table = ds.dataset(str(out), format="parquet").to_table(columns=["input_index", "completion_index"])
    return list(zip(table["input_index"].to_pylist(), table["completion_index"].to_pylist()))


def scores(out: Path) -> dict:
    rows = ds.dataset(str(out), format="parquet").to_table(columns=["input_index", "completion_index", "score"])
    return {(i, c): s for i, c, s in zip(*(rows[k].to_pylist() for k in ("input_index", "completion_index", "score")))}


def stop_once(kind: str, at: int, score_args: list[str], work: Path) -> dict:
    out, counter = work / kind, work / f"{kind}.count"
    cmd = [sys.executable, "-c", CHILD, kind, str(at), str(counter), *score_args, "-o", str(out)]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sig = {"SIGTERM": signal.SIGTERM, "SIGUSR1": signal.SIGUSR1, "SIGKILL": signal.SIGKILL}.get(kind)
    if sig is not None:
        while finished(counter)[0] < at and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=3600)
    batches, rows = finished(counter)
    kept = saved(out)
    again = subprocess.run([sys.executable, "-m", "rmscore", *score_args, "-o", str(out)], env=child_env(),
                           capture_output=True, text=True)
    return {"kind": kind, "exit": proc.returncode, "batches": batches, "finished": rows, "saved": len(kept),
            "lost": rows - len(kept), "rerun_exit": again.returncode, "out": out,
            "said": next((line for line in stderr.splitlines() if line.startswith(("Error", "Stopped"))), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(ROOT / "data" / "demo" / "hh_rlhf_demo.jsonl"))
    parser.add_argument("--window", type=int, default=8192)
    parser.add_argument("--rows-per-part", type=int, default=50_000)
    parser.add_argument("--kinds", default="SIGTERM,SIGUSR1,SIGKILL,exception,enospc")
    parser.add_argument("--at", type=float, default=0.5, help="when to stop, as a fraction of the batches")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rmscore-stops-"))
    score_args = ["score", args.input, "--window", str(args.window), "--rows-per-part", str(args.rows_per_part),
                  "--no-progress"]
    subprocess.run([sys.executable, "-m", "rmscore", *score_args, "-o", str(work / "reference")], env=child_env(),
                   check=True, capture_output=True)
    reference = scores(work / "reference")
    total = json.loads(next((work / "reference" / ".rmscore").glob("stats-*.json")).read_text())["batches"]
    at = max(1, int(total * args.at))
    print(f"{len(reference)} completions in {total} batches; window {args.window}, {args.rows_per_part} rows per "
          f"part; each stop after batch {at}\n")
    print("| stop | exit | batches done | rows finished | rows saved | rows lost | rerun exact |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind in args.kinds.split(","):
        r = stop_once(kind, at, score_args, work)
        got = scores(r["out"])
        exact = r["rerun_exit"] == 0 and len(saved(r["out"])) == len(got) == len(reference) and all(
            abs(got[k] - reference[k]) < 1e-5 for k in reference)
        print(f"| {kind} | {r['exit']} | {r['batches']} | {r['finished']} | {r['saved']} | {r['lost']} | "
              f"{'yes' if exact else 'NO'} |")
        if r["said"]:
            print(f"|  | `{r['said'][:110]}` | | | | | |")


if __name__ == "__main__":
    main()
