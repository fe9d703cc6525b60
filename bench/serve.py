"""Online serving benchmark: rmscore serve against the two servers people run today.

    python bench/serve.py --preset cpu               # 2 CPU cores, a few minutes
    python bench/serve.py --preset gpu --out $OUT    # one GPU: Llama-3.2-1B-sized, bf16, random weights

Servers (each its own process, the same checkpoint, OpenRLHF's POST /get_reward):
  one-at-a-time  the Flask-style endpoint (OpenRLHF's serve_rm.py): a request holds the model until
                 it is done; its queries in fixed batches of 16, padded, in input order
  count-batcher  a dynamic batcher that counts items (Mixedbread's `batched`: batch 32, 5 ms):
                 queries of all requests in padded batches of up to 32, no token budget
  rmscore        rmscore serve with its defaults (--max-wait-ms 5)
Phases: 64 concurrent clients each sending one query per request (OpenRLHF >= 0.9.1), then one
client sending large requests (OpenRLHF <= 0.9.0). Each request opens a new connection, as
OpenRLHF's client does. Reports requests/s, tokens/s (tokens of the queries), p50/p99 latency,
the server's peak memory (CPU: max RSS; GPU: most device memory seen) and the largest difference
from a batch-size-1 forward. Writes serve-<preset>.json and .md to --out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import (  # noqa: E402
    CPU_SMALL, LLAMA_1B, Preset, build_model, build_tokenizer, corpus_words, lengths, text_of,
)

PRESETS = {  # (preset, clients, single-query requests, large requests, queries per large request)
    "cpu": (Preset("cpu", CPU_SMALL, [], scale=8.0), 64, 256, 2, 128),
    # Sized for bench/device_check.sh's 150 s step on one H200: three servers start and load the
    # model, and each serves ~0.6M + ~0.6M tokens (2,048 x 1 and 4 x 512 ran past the window).
    "gpu": (Preset("gpu", LLAMA_1B, [], device="cuda", dtype="bfloat16"), 64, 512, 2, 256),
}
SERVERS = ("one-at-a-time", "count-batcher", "rmscore")
REFERENCE_QUERIES = 128  # per phase, scored one by one in this process


def make_checkpoint(preset: Preset, folder: Path) -> None:
    words = corpus_words()
    tokenizer = build_tokenizer(words)
    # Built on the served device in the served dtype (random weights: nothing to lose; a 1B model's
    # initialisation takes seconds on a GPU, far longer on the CPU), saved once for all servers.
    model, _ = build_model(Preset(preset.name, preset.arch, [], device=preset.device, dtype=preset.dtype),
                           len(tokenizer), tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if preset.device == "cuda":
        import torch

        torch.cuda.empty_cache()  # this process keeps only its batch-size-1 reference model


def make_queries(folder: Path, preset: Preset, count: int, seed: int) -> list[str]:
    """Whole conversations as a policy renders them (OpenRLHF's query), long-tailed lengths."""
    import random

    from transformers import AutoTokenizer

    tokenizer, words, rng = AutoTokenizer.from_pretrained(folder), corpus_words(), random.Random(seed)
    conversations = []
    for _ in range(count):
        prompt, completion = lengths(rng, preset.scale)
        conversations.append([{"role": "user", "content": text_of(rng, words, tokenizer, prompt)},
                              {"role": "assistant", "content": text_of(rng, words, tokenizer, completion)}])
    return tokenizer.apply_chat_template(conversations, tokenize=False)


def reference(folder: Path, preset: Preset, queries: list[str]) -> list[float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, preset.dtype))
    model.to(preset.device).eval()
    with torch.inference_mode():
        return [model(torch.tensor([tokenizer(q, add_special_tokens=False)["input_ids"]], device=preset.device))
                .logits[0, 0].float().item() for q in queries]


# --- clients ----------------------------------------------------------------------------------

def post(url: str, body: dict) -> dict:
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    for _ in range(100):  # 503 + Retry-After is backpressure, not failure: retry as verl would
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            conn.request("POST", "/get_reward", json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status == 200:
            return json.loads(data)
        if response.status != 503:
            raise RuntimeError(f"{url}: {response.status} {data[:200]!r}")
        time.sleep(float(response.getheader("retry-after", "1")))
    raise RuntimeError(f"{url}: still 503 after 100 tries")


def drive(url: str, requests: list[list[str]], clients: int) -> dict:
    """`clients` threads send `requests` as fast as they are answered; per-request latencies."""
    latencies, scores, lock, next_index = [0.0] * len(requests), [None] * len(requests), threading.Lock(), [0]

    def client():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(requests):
                return
            start = time.perf_counter()
            scores[i] = post(url, {"query": requests[i], "prompts": [""] * len(requests[i])})["rewards"]
            latencies[i] = time.perf_counter() - start

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "scores": [s for r in scores for s in r]}


# --- servers ----------------------------------------------------------------------------------

def start(name: str, folder: Path, preset: Preset) -> tuple[subprocess.Popen, str, list[str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if name == "rmscore":
        cmd = [sys.executable, "-m", "rmscore", "serve", "-m", str(folder), "--port", "0", "--dtype", preset.dtype,
               "--device", preset.device, "--max-wait-ms", "5"]
    else:
        cmd = [sys.executable, str(HERE / "serve_baselines.py"), name, str(folder), preset.device, preset.dtype]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        found = [m.group(1) for line in lines if (m := re.search(r"listening on (http://\S+?)[;\s]", line))]
        if found and _healthy(found[0]):
            return proc, found[0], lines
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not start: {''.join(lines)[-2000:]}")


def _healthy(url: str) -> bool:
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


class PeakMemory:
    """The server process's peak: max RSS on CPU, the most device memory nvidia-smi saw on GPU."""

    def __init__(self, pid: int, gpu: bool):
        self.pid, self.gpu, self.peak, self.done = pid, gpu, 0.0, threading.Event()
        if gpu:
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while not self.done.wait(0.2):
            query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
            out = subprocess.run(query, capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, mib = (x.strip() for x in line.split(","))
                if pid == str(self.pid):
                    self.peak = max(self.peak, float(mib) / 1024)

    def read(self) -> float:
        self.done.set()
        if not self.gpu:
            status = Path(f"/proc/{self.pid}/status").read_text()
            self.peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 2**20
        return round(self.peak, 2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_server(name, folder, preset, phases, refs, tokens) -> list[dict]:
    proc, url, _ = start(name, folder, preset)
    memory = PeakMemory(proc.pid, preset.device == "cuda")
    rows = []
    try:
        drive(url, [[q] for q in phases["64 clients x 1 query"][0][:64]], 64)  # warm-up
        for phase, (queries, requests, clients) in phases.items():
            result = drive(url, requests, clients)
            diff = max(abs(a - b) for a, b in zip(result["scores"], refs[phase]))
            rows.append({"server": name, "phase": phase, "requests_s": round(len(requests) / result["seconds"], 3),
                         "tokens_s": round(tokens[phase] / result["seconds"]),
                         "seconds": round(result["seconds"], 1),
                         "p50_ms": round(1000 * percentile(result["latencies"], 0.5), 1),
                         "p99_ms": round(1000 * percentile(result["latencies"], 0.99), 1),
                         "max_abs_diff": diff})
        peak = memory.read()
        for row in rows:
            row["peak_gib"] = peak
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the number of requests (smoke runs)")
    args = parser.parse_args()
    preset, clients, singles, large, per_large = PRESETS[args.preset]
    singles, per_large = max(64, int(singles * args.scale)), max(8, int(per_large * args.scale))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rm"
        make_checkpoint(preset, folder)
        one = make_queries(folder, preset, singles, seed=1)
        big = make_queries(folder, preset, large * per_large, seed=2)
        large_requests = [big[i:i + per_large] for i in range(0, len(big), per_large)]
        phases = {"64 clients x 1 query": (one, [[q] for q in one], clients),
                  f"1 client x {per_large} queries": (big, large_requests, 1)}
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        tokens = {phase: sum(len(ids) for ids in tok(queries, add_special_tokens=False)["input_ids"])
                  for phase, (queries, _, _) in phases.items()}
        refs = {phase: reference(folder, preset, queries[:REFERENCE_QUERIES])
                for phase, (queries, _, _) in phases.items()}
        rows = []
        for name in args.servers.split(","):
            print(f"[bench] {args.preset}: {name} ...", file=sys.stderr, flush=True)
            rows += run_server(name, folder, preset, phases, refs, tokens)
    header = (f"preset {args.preset}: {preset.arch['hidden_size']}-wide {preset.arch['num_hidden_layers']}-layer Llama "
              f"seq-cls ({preset.dtype}, random weights); {singles} single-query requests from {clients} clients, "
              f"{large} requests of {per_large} queries from 1 client; {' + '.join(f'{n:,}' for n in tokens.values())} "
              f"tokens; max_abs_diff on the first {REFERENCE_QUERIES} queries "
              f"of each phase against a batch-size-1 forward; {time.strftime('%Y-%m-%d')}, "
              f"total {time.perf_counter() - began:.0f} s")
    table = markdown(rows)
    print(header + "\n\n" + table)
    (out_dir / f"serve-{args.preset}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    (out_dir / f"serve-{args.preset}.md").write_text(header + "\n\n" + table + "\n")


def markdown(rows: list[dict]) -> str:
    keys = ["server", "phase", "seconds", "requests_s", "tokens_s", "p50_ms", "p99_ms", "peak_gib", "max_abs_diff"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.2e}" if k == "max_abs_diff" else str(row[k]) for k in keys) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
