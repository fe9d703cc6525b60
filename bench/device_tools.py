"""Helpers of bench/device_check.sh and device_verify.sh: the environment report, random-weight
checkpoints and the report of a run's steps.

    python bench/device_tools.py env --out OUT/env.json
    python bench/device_tools.py checkpoint --size 8b --out DIR --device cuda --dtype bfloat16
    python bench/device_tools.py report --out OUT --name device-check --title "Device check" --seconds N

A checkpoint is a Llama-3-shaped sequence classifier (body of the real size, the benchmark's
8k-token BPE tokenizer instead of the 128k one) with random weights, saved like a real one, so
`rmscore doctor -m DIR` loads it through the normal path without any download.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import CPU_SMALL, CPU_TINY, LLAMA_1B, LLAMA_8B, build_tokenizer, corpus_words  # noqa: E402

SIZES = {"tiny": CPU_TINY, "small": CPU_SMALL, "1b": LLAMA_1B, "8b": LLAMA_8B}
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "flash-attn", "flash-attn-4", "kernels", "triton")


def environment() -> dict:
    import torch

    report = {"python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
              "packages": {name: _version(name) for name in PACKAGES}, "cuda": torch.cuda.is_available(),
              "flex_attention": _has_flex()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        report.update(device=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(total / 2**30, 1),
                      free_gib=round(free / 2**30, 1), cuda_version=torch.version.cuda, devices=torch.cuda.device_count())
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu"
        result = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
        report["nvidia_smi"] = result.stdout.strip()
    return report


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _has_flex() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def save_checkpoint(size: str, out: Path, device: str, dtype: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = build_tokenizer(corpus_words())
    config = LlamaConfig(**{**SIZES[size], "vocab_size": len(tokenizer)}, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # built in the target dtype: no fp32 copy of 8B
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config).eval()
    finally:
        torch.set_default_dtype(previous)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="5GB")
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"saved {size} ({params / 1e9:.2f}B parameters, {dtype}) to {out}")


def write_report(out: Path, name: str, title: str, total: int, dry: bool) -> int:
    """OUT/NAME.json and .md from OUT/steps.tsv, the step logs, OUT/env.json and the bench tables.
    Returns the number of steps that failed or timed out."""
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        step, status, seconds, command = line.split("\t", 3)
        log = out / "logs" / f"{step}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        steps.append({"step": step, "status": status, "seconds": int(seconds), "command": command, "log_tail": tail})
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    bench = out / "bench"
    tables = sorted(bench.glob("bench-*.md")) if bench.exists() else []
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "dry_run": dry, "total_seconds": total, "environment": env,
              "steps": steps, "bench": [json.loads(p.with_suffix(".json").read_text()) for p in tables]}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# {title}, {report['date']}" + (" (dry run, CPU)" if dry else ""), "",
             f"Device: {env.get('device', 'cpu')}; torch {env.get('packages', {}).get('torch')}, "
             f"transformers {env.get('packages', {}).get('transformers')}; total {total} s.", "",
             "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
    for s in steps:
        if s["status"] != "ok" or s["step"].startswith(("doctor", "invariant")):
            lines += ["", f"## {s['step']}: {s['status']}", "", "```", *s["log_tail"], "```"]
    for table in tables:
        lines += ["", f"## {table.stem}", "", table.read_text()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return sum(s["status"] not in ("ok", "skipped") for s in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="print and save the environment report")
    env.add_argument("--out", required=True)
    ckpt = sub.add_parser("checkpoint", help="save a random-weight Llama sequence classifier")
    ckpt.add_argument("--size", choices=sorted(SIZES), required=True)
    ckpt.add_argument("--out", required=True)
    ckpt.add_argument("--device", default="cpu")
    ckpt.add_argument("--dtype", default="float32")
    report = sub.add_parser("report", help="write OUT/NAME.md and .json from the steps' records")
    report.add_argument("--out", required=True)
    report.add_argument("--name", required=True)
    report.add_argument("--title", required=True)
    report.add_argument("--seconds", type=int, required=True)
    report.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.command == "report":
        sys.exit(min(write_report(Path(args.out), args.name, args.title, args.seconds, args.dry_run), 100))
    if args.command == "env":
        report = environment()
        print(json.dumps(report, indent=2))
        Path(args.out).write_text(json.dumps(report, indent=2))
    else:
        save_checkpoint(args.size, Path(args.out), args.device, args.dtype)


if __name__ == "__main__":
    main()
