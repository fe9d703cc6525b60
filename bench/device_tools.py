"""Helpers of bench/device_check.sh: the environment report and random-weight checkpoints.

    python bench/device_tools.py env --out OUT/env.json
    python bench/device_tools.py checkpoint --size 8b --out DIR --device cuda --dtype bfloat16

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import CPU_TINY, LLAMA_1B, LLAMA_8B, build_tokenizer, corpus_words  # noqa: E402

SIZES = {"tiny": CPU_TINY, "1b": LLAMA_1B, "8b": LLAMA_8B}
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
    args = parser.parse_args()
    if args.command == "env":
        report = environment()
        print(json.dumps(report, indent=2))
        Path(args.out).write_text(json.dumps(report, indent=2))
    else:
        save_checkpoint(args.size, Path(args.out), args.device, args.dtype)


if __name__ == "__main__":
    main()
