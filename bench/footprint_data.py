"""Deterministic inputs for bench/footprint.py: prompt + completion rows to score, and scored folders
shaped as `rmscore score` writes them (the shape tests/test_inspect_memory.py checks inspect on)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.store.output import BASE_SCHEMA

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo" / "hh_rlhf_demo.jsonl"
DEMO_MODEL = Path(__file__).resolve().parent.parent / "rmscore" / "data" / "demo-rm"
TINY_DESCRIPTION = ("a random Llama reward model (hidden size 32, 2 layers) with the demo model's tokenizer and chat "
                    "template: the forward costs next to nothing, so the figure is rmscore's own pipeline")
JSONL_DESCRIPTION = ("{rows} prompt + completion rows, JSON lines of ~250 characters (~64 tokens of the demo "
                     "model): each demo conversation's first user turn (up to 120 characters) made unique by a "
                     "number, and its 2 completions' first 200 characters")
SCORED_DESCRIPTION = ("a scored folder of {rows} rows as rmscore score writes it, ArmoRM-shaped (19 objectives), "
                      "8 completions per prompt, completions of 20-2,000 characters, parts of 50,000 rows, seed 0")
PER_PART, PER_PROMPT, OBJECTIVES = 50_000, 8, 19
WORDS = np.array("the a reward model prefers longer answers when it is not careful about length".split())


def write_jsonl(path: Path, rows: int) -> Path:
    """Row i: demo conversation (i // 2) % 200, its first user turn with ' (i // 2)' added, and
    its completion i % 2. Every prompt is distinct (two completions each, as in the demo), so no
    row is a duplicate that rmscore would score once for two."""
    demo = [json.loads(line) for line in DEMO.read_text().splitlines()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(rows):
            conv = demo[(i // 2) % len(demo)]
            prompt = conv["prompt"][0]["content"][:120] + f" ({i // 2})"
            f.write(json.dumps({"prompt": prompt, "completion": conv["completions"][i % 2][:200]}) + "\n")
    return path


def write_tiny_model(folder: Path) -> Path:
    """TINY_DESCRIPTION, saved as a checkpoint `rmscore score -m` loads like any other."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig.from_pretrained(DEMO_MODEL)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.head_dim = 32, 64, 2, 8
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(DEMO_MODEL / name, folder / name)
    return folder


def write_merge_input(folder: Path, rows: int, seed: int = 0) -> Path:
    """write_scored's folder with the completion marker a finished single-process run leaves, so
    `rmscore merge` takes it."""
    from rmscore.distributed.completion import META_DIR, mark_done

    write_scored(folder, rows, seed)
    (folder / META_DIR).mkdir()
    mark_done(folder, "00000-of-00001", {"limit": None})
    return folder


def write_scored(folder: Path, rows: int, seed: int = 0) -> Path:
    """Parts of PER_PART rows: scores log(length) + noise, 1% too_long, objective lists per row."""
    rng = np.random.default_rng(seed)
    base = " ".join(rng.choice(WORDS, 2000))  # texts are slices of it: compressible, like real text
    extra = [pa.field("rewards", pa.list_(pa.float32())), pa.field("gating_output", pa.list_(pa.float32()))]
    meta = {"model": "generated", "model_type": "armorm", "objectives": [f"objective_{j}" for j in range(OBJECTIVES)]}
    schema = pa.schema(list(BASE_SCHEMA) + extra, metadata={"rmscore": json.dumps(meta)})
    folder.mkdir(parents=True)
    for part, start in enumerate(range(0, rows, PER_PART)):
        table = _part(rng, base, start, min(PER_PART, rows - start), schema)
        pq.write_table(table, folder / f"part-00000-of-00001-{part:05d}.parquet", row_group_size=5000)
    return folder


def _part(rng, base: str, start: int, n: int, schema: pa.Schema) -> pa.Table:
    index = np.arange(start, start + n)
    lengths = rng.integers(20, 2000, n)
    prompts = index // PER_PROMPT
    statuses = np.where(rng.random(n) < 0.01, "too_long", "ok")
    scores = np.where(statuses == "ok", np.log(lengths) + rng.normal(0, 1, n), np.nan)
    flat = pa.array(rng.normal(0, 1, n * OBJECTIVES).astype(np.float32))
    offsets = pa.array(np.arange(0, n * OBJECTIVES + 1, OBJECTIVES, dtype=np.int32))
    detail = "longer than the max length (9000 > 8192 tokens)"
    return pa.table({
        "input_index": pa.array(prompts, pa.int64()), "completion_index": pa.array(index % PER_PROMPT, pa.int32()),
        "prompt_id": pa.array([f"{p:016x}" for p in prompts]), "side": pa.nulls(n, pa.string()),
        "prompt": pa.array([[{"role": "user", "content": f"question {p}"}] for p in prompts],
                           BASE_SCHEMA.field("prompt").type),
        "prompt_is_text": pa.array(np.ones(n, bool)), "completion": pa.array([base[:k] for k in lengths]),
        "score": pa.array(scores, from_pandas=True), "num_tokens": pa.array(lengths // 4 + 20, pa.int32()),
        "status": pa.array(statuses), "status_detail": pa.array([None if s == "ok" else detail for s in statuses]),
        "rewards": pa.ListArray.from_arrays(offsets, flat), "gating_output": pa.ListArray.from_arrays(offsets, flat),
    }, schema=schema)
