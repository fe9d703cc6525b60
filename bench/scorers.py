"""The six scorers the benchmark compares, each timed from text to scores (model already loaded).

  per-example   one forward per completion, .item() each time (SimPO, RLHFlow scripts)
  fixed-16      16 rows per batch in input order, padded to the longest (OpenRLHF, RewardBench)
  pipeline      transformers pipeline("text-classification", batch_size=16)
  rmscore-padded / rmscore-packed / rmscore-prompt-reuse: rmscore's own loop, one path forced each
  rmscore-auto  rmscore's own loop as a user runs it: --forward auto, default budget and backend
  rmscore-invariant  rmscore's loop with --batch-invariant (rows at canonical padded lengths);
                rmscore-invariant-64 the same with lengths rounded up to multiples of 64 instead, the
                other rule issue 31 proposed (kept to show why the default rule was chosen)

Run as a child process by run.py (one scorer per process, so peak memory is the scorer's own).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import PRESETS, build_model, build_tokenizer, corpus_words, make_rows  # noqa: E402

SCORERS = ("per-example", "fixed-16", "pipeline", "rmscore-padded", "rmscore-packed", "rmscore-prompt-reuse",
           "rmscore-auto", "rmscore-invariant", "rmscore-invariant-64")


def conversation(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]


def per_example(model, tokenizer, rows, preset) -> tuple[list[float], int]:
    scores = []
    for row in rows:
        ids = tokenizer.apply_chat_template(conversation(row), tokenize=True, return_dict=False)
        scores.append(model(torch.tensor([ids], device=model.device)).logits[0, 0].item())
    return scores, 0


def fixed_batches(model, tokenizer, rows, preset) -> tuple[list[float], int]:
    scores, padded = [], 0
    texts = tokenizer.apply_chat_template([conversation(r) for r in rows], tokenize=False)
    for start in range(0, len(texts), preset.fixed_batch):
        enc = tokenizer(texts[start:start + preset.fixed_batch], padding=True, add_special_tokens=False,
                        return_tensors="pt").to(model.device)
        padded += enc["input_ids"].numel()
        scores += model(**enc).logits[:, 0].float().tolist()
    return scores, padded


def pipeline_scorer(model, tokenizer, rows, preset) -> tuple[list[float], int]:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    texts = tokenizer.apply_chat_template([conversation(r) for r in rows], tokenize=False)
    # Where the tokenizer adds its own BOS (real Llama-3 ones do), strip the template's, as the
    # Online-RLHF scripts do; otherwise the pipeline would see two.
    if tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        texts = [t.removeprefix(tokenizer.bos_token) for t in texts]
    outputs = pipe(texts, batch_size=preset.fixed_batch, function_to_apply="none")
    # The pipeline pads each batch of fixed_batch rows, in input order, to its longest row.
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    padded = sum(len(chunk) * max(chunk) for chunk in (lengths[i:i + preset.fixed_batch]
                                                       for i in range(0, len(lengths), preset.fixed_batch)))
    return [o["score"] for o in outputs], padded


def rmscore_scorer(path: str, invariant: str | None = None):
    def run(model, tokenizer, rows, preset):
        from rmscore.score.batching import chunked
        from rmscore.config import BatchConfig, ModelConfig
        from rmscore.score.forward import Runners, default_token_budget
        from rmscore.models.seq_cls import SeqClsModel
        from rmscore.score.pipeline import prefetch
        from rmscore.score.records import Sample
        from rmscore.score.scorer import Scorer
        from rmscore.score.summary import RunSummary

        if model.device.type == "cuda" and path == "packed":
            # On a GPU, packed rows are cheap only with block-sparse attention (flex); sdpa would
            # compute the full T x T of each packed row. Every other path runs on the default sdpa.
            model.set_attn_implementation("flex_attention")
        adapter = SeqClsModel.from_parts(ModelConfig("bench"), model, tokenizer, {}, model.device)
        summary = RunSummary("bench")
        budget = preset.budget or default_token_budget(adapter, preset.arch.get("max_position_embeddings", 8192))
        runners = Runners(adapter, path, batch_invariant=invariant is not None)
        if invariant == "64":
            runners.bucketed.canonical = lambda n: -(-n // 64) * 64
        scorer = Scorer(adapter, runners, 1 << 20, BatchConfig(max_tokens_per_batch=budget), summary)
        samples = (Sample(i, 0, r["prompt_id"], [{"role": "user", "content": r["prompt"]}], True, r["completion"])
                   for i, r in enumerate(rows))
        scores = []
        for prepared in prefetch(map(scorer.prepare, chunked(samples, 8192)), depth=1):
            scores += [out["score"] for out in scorer.run(prepared)]
        return scores, summary.padded_tokens, summary.computed_tokens, budget

    return run


FUNCTIONS = {"per-example": per_example, "fixed-16": fixed_batches, "pipeline": pipeline_scorer,
             **{f"rmscore-{p}": rmscore_scorer(p) for p in ("padded", "packed", "prompt-reuse", "auto")},
             "rmscore-invariant": rmscore_scorer("padded", "default"),
             "rmscore-invariant-64": rmscore_scorer("padded", "64")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", required=True)
    parser.add_argument("--scorer", required=True, choices=SCORERS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--budget", type=int, default=None, help="rmscore tokens per batch instead of the preset's")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.budget:
        preset.budget = args.budget
    if preset.device == "cpu":
        torch.set_num_threads(1)  # a shared machine: one thread per process, as the figures state
    words = corpus_words()
    tokenizer = build_tokenizer(words)
    rows = make_rows(preset, tokenizer, words)
    model, config = build_model(preset, len(tokenizer), tokenizer.pad_token_id)
    fn = FUNCTIONS[args.scorer]
    with torch.inference_mode():
        # Warm-up: allocator, kernels, first-call costs. The packed path on a GPU runs compiled flex
        # attention, which compiles once per packed-row length: it warms up on the whole workload,
        # so the timed run measures the steady state a long job runs in; the compile time is
        # reported apart (warmup_seconds).
        warm = rows if preset.device == "cuda" and args.scorer == "rmscore-packed" else rows[:8]
        warm_start = time.perf_counter()
        fn(model, tokenizer, warm, preset)
        warmup_seconds = time.perf_counter() - warm_start
        if preset.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        runs = []
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            result = fn(model, tokenizer, rows, preset)
            if preset.device == "cuda":
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - start, time.process_time() - cpu_start))
        runs.sort()
        seconds, cpu_seconds = runs[len(runs) // 2]  # the median run
        spread = runs[-1][0] - runs[0][0]
    lengths = [len(tokenizer.apply_chat_template(conversation(r), tokenize=True, return_dict=False)) for r in rows]
    scores, padded = result[0], result[1] or sum(lengths)
    computed = result[2] if len(result) > 2 else sum(lengths)
    budget = result[3] if len(result) > 3 else None
    if preset.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    Path(args.out).write_text(json.dumps({
        "scorer": args.scorer, "seconds": seconds, "cpu_seconds": cpu_seconds, "spread": spread,
        "repeat": args.repeat, "scores": scores, "lengths": lengths,
        "padded_tokens": padded, "computed_tokens": computed, "peak_gib": peak, "budget": budget,
        "warmup_seconds": warmup_seconds,
    }))


if __name__ == "__main__":
    main()
