"""The resource figures the docs quote: peak memory and wall time of rmscore commands as a user runs them.

    python bench/footprint.py --repeat 3                  # the default figures, median and range of 3 runs
    python bench/footprint.py --only score-20k,demo-score # a subset; other figures in the JSON stay
    python bench/footprint.py --list                      # the figures and what each runs

Each figure runs its command in a fresh process, with the user's environment and rmscore's
defaults (no thread pinning), started by a small wrapper process that reads the command's peak RSS
from the kernel (ru_maxrss of its children: the command, and any process the command waited for).
Inputs are generated, deterministically, in a temporary folder, once per invocation. Writes
bench/results/footprint.json (merged: a figure not run keeps its last measurement) and prints a
markdown table; `python bench/readme.py` renders the JSON into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import footprint_data as data  # noqa: E402
from meta import load_average, run_meta, version  # noqa: E402

DEFAULT_OUT = HERE / "results" / "footprint.json"


@dataclass(frozen=True)
class Figure:
    name: str
    what: str  # what docs/benchmarks.md says it measures
    input: str  # key into INPUTS
    argv: tuple[str, ...]  # after `rmscore`; {in}, {out} and {model} are filled in
    default: bool = True  # in the set a plain run measures


FIGURES = [
    Figure("score-20k", "rmscore score, 20k rows", "jsonl-20k", ("score", "{in}", "-o", "{out}", "--overwrite")),
    # ~2 hours on 2 shared cores (the demo model scored ~30 rows/s there, 2026-11-29): only with --only
    Figure("score-200k", "rmscore score, 200k rows", "jsonl-200k", ("score", "{in}", "-o", "{out}", "--overwrite"),
           default=False),
    # Issue 28: peak memory flat in the rows. A tiny random model, so the pipeline is what runs (~700
    # rows/s here: 100k rows ~2.5 minutes, 1M ~25): only with --only.
    Figure("score-tiny-100k", "rmscore score, 100k rows, tiny model", "jsonl-100k",
           ("score", "{in}", "-m", "{model}", "-o", "{out}", "--overwrite"), default=False),
    Figure("score-tiny-1m", "rmscore score, 1M rows, tiny model", "jsonl-1m",
           ("score", "{in}", "-m", "{model}", "-o", "{out}", "--overwrite"), default=False),
    Figure("build-pairs-100k", "rmscore build-pairs, 100k scored rows", "scored-100k",
           ("build-pairs", "{in}", "-o", "{out}/pairs.parquet", "--overwrite")),
    Figure("build-pairs-1m", "rmscore build-pairs, 1M scored rows", "scored-1m",
           ("build-pairs", "{in}", "-o", "{out}/pairs.parquet", "--overwrite")),
    Figure("build-pairs-4m", "rmscore build-pairs, 4M scored rows", "scored-4m",
           ("build-pairs", "{in}", "-o", "{out}/pairs.parquet", "--overwrite")),
    Figure("merge-100k", "rmscore merge, 100k scored rows", "merge-100k",
           ("merge", "{in}", "-o", "{out}/merged.parquet", "--overwrite")),
    Figure("merge-1m", "rmscore merge, 1M scored rows", "merge-1m",
           ("merge", "{in}", "-o", "{out}/merged.parquet", "--overwrite")),
    Figure("inspect-200k", "rmscore inspect, 200k scored rows", "scored-200k", ("inspect", "{in}", "-o", "{out}")),
    Figure("inspect-1m", "rmscore inspect, 1M scored rows", "scored-1m", ("inspect", "{in}", "-o", "{out}")),
    Figure("demo-score", "make demo's scoring step", "demo",
           ("score", "{in}", "-o", "{out}", "--overwrite")),
]
INPUTS = {  # key: (description, generator or None for a shipped file)
    "jsonl-20k": data.JSONL_DESCRIPTION.format(rows="20,000"),
    "jsonl-100k": data.JSONL_DESCRIPTION.format(rows="100,000"),
    "jsonl-200k": data.JSONL_DESCRIPTION.format(rows="200,000"),
    "jsonl-1m": data.JSONL_DESCRIPTION.format(rows="1,000,000"),
    "scored-100k": data.SCORED_DESCRIPTION.format(rows="100,000"),
    "merge-100k": data.SCORED_DESCRIPTION.format(rows="100,000") + ", marked finished",
    "merge-1m": data.SCORED_DESCRIPTION.format(rows="1,000,000") + ", marked finished",
    "scored-200k": data.SCORED_DESCRIPTION.format(rows="200,000"),
    "scored-1m": data.SCORED_DESCRIPTION.format(rows="1,000,000"),
    "scored-4m": data.SCORED_DESCRIPTION.format(rows="4,000,000"),
    "demo": "shipped with rmscore, make demo's input: 200 conversations x 2 completions",
}


def make_input(key: str, folder: Path) -> Path:
    """The figure's input, generated into folder (or the shipped demo file)."""
    if key == "demo":
        return REPO / "data" / "demo" / "hh_rlhf_demo.jsonl"
    kind, size = key.split("-")
    rows = int(size[:-1]) * (1000 if size.endswith("k") else 1_000_000)
    if kind == "jsonl":
        return data.write_jsonl(folder / f"{key}.jsonl", rows)
    if kind == "merge":
        return data.write_merge_input(folder / key, rows)
    return data.write_scored(folder / key, rows)


def rmscore_argv() -> list[str]:
    """`rmscore` as installed beside this interpreter (what a user types), else `python -m rmscore`."""
    script = Path(sys.executable).parent / "rmscore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rmscore"]


# Runs the command and reports its peak RSS and wall time. A fresh, small process of its own: a
# child's ru_maxrss starts from the RSS of the process it was forked from (Linux keeps the old
# memory's high-water mark across exec), so forking from this script, which holds generated inputs,
# would report this script's size for any command smaller than it.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; the command is the only child
open(sys.argv[1], "w").write(json.dumps({"code": code, "peak_kib": peak, "wall_s": wall}))
"""


def measure(argv: list[str], log: Path, cwd: Path = REPO) -> tuple[float, float]:
    """Run argv once; its (peak RSS in MiB, wall seconds). Raises with the log's tail if it fails."""
    result = log.with_suffix(".result.json")
    with open(log, "wb") as out:
        subprocess.run([sys.executable, "-c", WRAPPER, str(result), *argv], stdout=out, stderr=subprocess.STDOUT,
                       cwd=cwd, check=False)
    done = json.loads(result.read_text())
    if done["code"] != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited with {done['code']}:\n{tail}")
    return done["peak_kib"] / 1024, done["wall_s"]


def spread(values: list[float], digits: int) -> dict:
    return {"values": [round(v, digits) for v in values], "median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def run_figure(fig: Figure, path: Path, work: Path, repeat: int) -> dict:
    out = work / f"out-{fig.name}"
    model = work / "tiny-model"
    if any("{model}" in a for a in fig.argv) and not model.exists():
        data.write_tiny_model(model)
    argv = [a.format(**{"in": path, "out": out, "model": model}) for a in fig.argv]
    rss, wall, loads = [], [], []
    for i in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        if "{out}/" in " ".join(fig.argv):  # build-pairs and merge write a file into it
            out.mkdir(parents=True)
        loads.append(load_average())
        print(f"[footprint] {fig.name} run {i + 1}/{repeat} (load {loads[-1]}) ...", file=sys.stderr, flush=True)
        peak, seconds = measure(rmscore_argv() + argv, work / f"{fig.name}.log")
        rss.append(peak)
        wall.append(seconds)
        print(f"[footprint] {fig.name}: {peak:,.0f} MiB, {seconds:.1f} s", file=sys.stderr, flush=True)
    shown = ["rmscore"] + [a.replace(str(work), "$TMP").replace(str(REPO) + "/", "") for a in argv]
    described = INPUTS[fig.input] + (f"; -m: {data.TINY_DESCRIPTION}" if "{model}" in fig.argv else "")
    return {"name": fig.name, "what": fig.what, "command": " ".join(shown), "input": described,
            "repeat": repeat, "rss_mib": spread(rss, 0), "wall_s": spread(wall, 1), "load_average": loads,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_all(figures: list[Figure], repeat: int, work: Path) -> list[dict]:
    paths: dict[str, Path] = {}
    results = []
    for fig in figures:
        if fig.input not in paths:
            start = time.perf_counter()
            paths[fig.input] = make_input(fig.input, work)
            print(f"[footprint] input {fig.input}: {time.perf_counter() - start:.0f} s to generate",
                  file=sys.stderr, flush=True)
        results.append(run_figure(fig, paths[fig.input], work, repeat))
    return results


def merge(path: Path, meta: dict, results: list[dict]) -> dict:
    """The JSON at path with these figures replaced (each keeps its run's meta), in FIGURES order."""
    old = json.loads(path.read_text()) if path.exists() else {"figures": []}
    for r in results:
        r["meta"] = meta
    by_name = {f["name"]: f for f in old["figures"]} | {r["name"]: r for r in results}
    order = [f.name for f in FIGURES]
    return {"figures": sorted(by_name.values(), key=lambda f: order.index(f["name"]) if f["name"] in order else 99)}


def markdown(figures: list[dict]) -> str:
    lines = ["| figure | command | peak RSS, MiB: median (range) | wall s: median (range) | runs | date |",
             "|---|---|---:|---:|---:|---|"]
    for f in figures:
        r, w = f["rss_mib"], f["wall_s"]
        lines.append(f"| {f['what']} | `{f['command']}` | {r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f}) "
                     f"| {w['median']} ({w['min']}-{w['max']}) | {f['repeat']} | {f['date'][:10]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure; the JSON keeps each run, "
                        "the median and the range")
    parser.add_argument("--only", default="", help="comma-separated figure names (see --list)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON to write (merged with what is there)")
    parser.add_argument("--list", action="store_true", help="print the figures and exit")
    args = parser.parse_args()
    if args.list:
        for f in FIGURES:
            print(f"{f.name:16} rmscore {' '.join(f.argv)}{'' if f.default else '   (only with --only)'}\n"
                  f"{'':16} on {INPUTS[f.input]}")
        return
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {f.name for f in FIGURES}
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; --list shows them")
    figures = [f for f in FIGURES if f.name in names or (not names and f.default)]
    load_at_start, out = load_average(), Path(args.out)
    with tempfile.TemporaryDirectory(prefix="rmscore-footprint-") as work:
        results = run_all(figures, args.repeat, Path(work))
    meta = run_meta("python bench/footprint.py", load_at_start, matplotlib=version("matplotlib"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merge(out, meta, results), indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
