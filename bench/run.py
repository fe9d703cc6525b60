"""One benchmark run: the same workload through every scorer, one table.

    python bench/run.py --preset cpu-long --repeat 3   # issue 12's long-tailed CPU workload, ~15 min
    python bench/run.py --preset cpu                   # short rows, 2 CPU cores, about 3 minutes
    python bench/run.py --preset gpu-8b --out $OUT     # Llama-3-8B-sized random weights, bf16, one GPU
    python bench/run.py --preset gpu-8b-quick --out $OUT  # the same model on half the rows (device check)
    python bench/run.py --preset gpu-1b
    python bench/run.py --preset cpu-long --scorers rmscore-padded,rmscore-prompt-reuse --budgets 512,1024,2048
    python bench/run.py --preset cpu-long --scorers rmscore-padded,rmscore-invariant,rmscore-invariant-64 --repeat 3

Prints a markdown table and writes bench-<preset>.json (and .md) to --out. Columns: rmscore's
tokens per batch, useful tokens/s (tokens of the scored rows per second: what a user feels),
rows/s, padding efficiency (tokens computed without padding / tokens computed with it), peak
memory, the largest score difference from the per-example scorer, and on GPU the model FLOP
utilisation against the measured bf16 GEMM peak and the 989 TFLOP/s spec. Each scorer runs in its
own process (one torch thread on CPU); --repeat N runs N rounds over all scorers and reports each
one's median round. The table is rewritten after every scorer (marked partial until the last).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meta import load_average, run_meta  # noqa: E402
from scorers import SCORERS  # noqa: E402
from workload import PRESETS, model_flops  # noqa: E402

SPEC_PEAK = 989e12  # H100 SXM / H200 dense bf16


def run_child(preset: str, scorer: str, out_dir: Path, repeat: int, budget: int | None = None) -> dict:
    out = out_dir / f"{preset}-{scorer}{f'-{budget}' if budget else ''}.json"
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    extra = ["--budget", str(budget)] if budget else []
    subprocess.run([sys.executable, str(HERE / "scorers.py"), "--preset", preset, "--scorer", scorer,
                    "--out", str(out), "--repeat", str(repeat), *extra], check=True, env=env)
    return json.loads(out.read_text())


def median_run(runs: list[dict]) -> dict:
    """One scorer's rounds as one result: the median round's figures, and the spread of wall time."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = dict(ordered[len(ordered) // 2])
    median.update(repeat=len(runs), spread=ordered[-1]["seconds"] - ordered[0]["seconds"])
    return median


def gemm_peak() -> float:
    """Measured bf16 TFLOP/s of a large square matmul: the honest ceiling for MFU."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192**3 * n / (time.perf_counter() - start)


def summarise(preset, results: dict[str, dict], peak: float | None) -> list[dict]:
    from transformers import LlamaConfig

    config = LlamaConfig(**{"vocab_size": 8005, **preset.arch})
    reference = next(iter(results.values()))["scores"]  # per-example when it ran: it runs first
    rows = []
    for name, r in results.items():
        useful = sum(r["lengths"])
        flops = sum(model_flops(config, n) for n in r["lengths"])
        row = {
            "scorer": name,
            "budget": r.get("budget") or "-",  # rmscore's tokens per batch (its default unless --budgets)
            "seconds": round(r["seconds"], 2),
            **({"spread_s": round(r["spread"], 2)} if r["repeat"] > 1 else {}),
            "cpu_s": round(r["cpu_seconds"], 2),
            "useful_tok_s": round(useful / r["seconds"]),
            "rows_s": round(len(r["lengths"]) / r["seconds"], 1),
            "padding_eff": round(r["computed_tokens"] / r["padded_tokens"], 3),
            "tokens_computed_pct": round(100 * r["computed_tokens"] / useful, 1),
            "peak_gib": round(r["peak_gib"], 2),
            "max_abs_diff": max(abs(a - b) for a, b in zip(r["scores"], reference)),
        }
        if peak:
            row["mfu_measured_peak"] = round(flops / r["seconds"] / peak, 3)
            row["mfu_spec_peak"] = round(flops / r["seconds"] / SPEC_PEAK, 3)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.2e}" if k == "max_abs_diff" else str(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def bench_meta(args, load_at_start: float | None, first: dict, device: str, seconds: float) -> dict:
    """What bench/readme.py prints beside a table: the command, date, versions, machine, workload,
    and how busy the machine was (1-minute load average at the start and the end)."""
    return run_meta("python bench/run.py", load_at_start, preset=args.preset, repeat=args.repeat, device=device,
                    torch_threads=1 if PRESETS[args.preset].device == "cpu" else None,
                    rows=len(first["lengths"]), tokens=sum(first["lengths"]), total_s=round(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--scorers", default=",".join(s for s in SCORERS if "invariant" not in s),
                        help="comma-separated; the default leaves out rmscore-invariant and rmscore-invariant-64")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all scorers; each scorer's median is reported")
    parser.add_argument("--budgets", default="", help="run the rmscore scorers at each of these tokens per batch "
                        "(e.g. 512,1024,2048); default: the preset's budget, or rmscore's own default")
    args = parser.parse_args()
    preset, out_dir = PRESETS[args.preset], Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start, load_at_start = time.perf_counter(), load_average()
    budgets = [int(b) for b in args.budgets.split(",") if b]
    runs: dict[str, list[dict]] = {}
    # Rounds: every scorer once per round, so a burst of load on a shared machine hits all of
    # them alike instead of one scorer's every repeat.
    # Measured first, so every partial table below has its MFU columns.
    peak = gemm_peak() if preset.device == "cuda" else None
    device = platform.processor() or platform.machine()
    if preset.device == "cuda":
        import torch

        device = torch.cuda.get_device_name()
        torch.cuda.empty_cache()
    planned = args.repeat * sum(len(budgets) if n.startswith("rmscore") and budgets else 1 for n in args.scorers.split(","))
    for round_ in range(args.repeat):
        for name in args.scorers.split(","):
            for budget in (budgets if name.startswith("rmscore") and budgets else [None]):
                label = f"{name}@{budget}" if budget else name
                print(f"[bench] {args.preset} round {round_ + 1}/{args.repeat}: {label} ...", file=sys.stderr, flush=True)
                runs.setdefault(label, []).append(run_child(args.preset, name, out_dir, 1, budget))
                # The table so far, rewritten after every scorer: a run cut short (a time limit, a
                # scorer that fails) still leaves the figures of every scorer that finished.
                done = sum(len(r) for r in runs.values())
                write_table(args, preset, runs, peak, device, start, load_at_start, done, planned)


def write_table(args, preset, runs: dict, peak, device: str, start: float, load_at_start, done: int, planned: int):
    results = {label: median_run(r) for label, r in runs.items()}
    rows = summarise(preset, results, peak)
    first = next(iter(results.values()))
    header = (f"preset {args.preset}, {len(first['lengths'])} rows, {sum(first['lengths']):,} tokens, device {device}"
              + (f", measured bf16 GEMM peak {peak / 1e12:.0f} TFLOP/s" if peak else ", 1 torch thread per process")
              + (f", median of {args.repeat} rounds" if args.repeat > 1 else "")
              + f", {time.strftime('%Y-%m-%d')}, total {time.perf_counter() - start:.0f} s"
              + ("" if done == planned else f" (partial: {done} of {planned} scorer runs so far)"))
    table = markdown(rows)
    if done == planned:
        print(header + "\n\n" + table)
    meta = bench_meta(args, load_at_start, first, device, time.perf_counter() - start)
    (Path(args.out) / f"bench-{args.preset}.json").write_text(
        json.dumps({"header": header, "meta": meta, "rows": rows, "complete": done == planned}, indent=2))
    (Path(args.out) / f"bench-{args.preset}.md").write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
