"""`rmscore inspect` on a generated 1M-row scored folder: peak memory stays bounded (slow).

Run: .venv/bin/python -m pytest -q -m slow tests/test_inspect_memory.py -s
It prints the command's peak RSS; the folder is ~20 part files of 50,000 rows, as `rmscore score`
writes them (completions of 20 to 2,000 characters, 8 per prompt, ArmoRM-shaped objective columns).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmscore.io.output import BASE_SCHEMA
from scored import peak_rss_mib

ROWS, PER_PART, PER_PROMPT, OBJECTIVES = 1_000_000, 50_000, 8, 19
WORDS = np.array("the a reward model prefers longer answers when it is not careful about length".split())


def make_scored(folder: Path, rows: int = ROWS, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = " ".join(rng.choice(WORDS, 2000))  # texts are slices of it: compressible, like real text
    extra = [pa.field("rewards", pa.list_(pa.float32())), pa.field("gating_output", pa.list_(pa.float32()))]
    meta = {"model": "generated", "model_type": "armorm", "objectives": [f"objective_{j}" for j in range(OBJECTIVES)]}
    schema = pa.schema(list(BASE_SCHEMA) + extra, metadata={"rmscore": json.dumps(meta)})
    folder.mkdir(parents=True)
    for part, start in enumerate(range(0, rows, PER_PART)):
        n = min(PER_PART, rows - start)
        index = np.arange(start, start + n)
        lengths = rng.integers(20, 2000, n)
        prompts = index // PER_PROMPT
        statuses = np.where(rng.random(n) < 0.01, "too_long", "ok")
        scores = np.where(statuses == "ok", np.log(lengths) + rng.normal(0, 1, n), np.nan)
        flat = pa.array(rng.normal(0, 1, n * OBJECTIVES).astype(np.float32))
        offsets = pa.array(np.arange(0, n * OBJECTIVES + 1, OBJECTIVES, dtype=np.int32))
        table = pa.table({
            "input_index": pa.array(prompts, pa.int64()), "completion_index": pa.array(index % PER_PROMPT, pa.int32()),
            "prompt_id": pa.array([f"{p:016x}" for p in prompts]), "side": pa.nulls(n, pa.string()),
            "prompt": pa.array([[{"role": "user", "content": f"question {p}"}] for p in prompts], BASE_SCHEMA.field("prompt").type),
            "prompt_is_text": pa.array(np.ones(n, bool)), "completion": pa.array([base[:k] for k in lengths]),
            "score": pa.array(scores, from_pandas=True), "num_tokens": pa.array(lengths // 4 + 20, pa.int32()),
            "status": pa.array(statuses), "status_detail": pa.array([None if s == "ok" else "longer than the max length "
                                                                    "(9000 > 8192 tokens)" for s in statuses]),
            "rewards": pa.ListArray.from_arrays(offsets, flat), "gating_output": pa.ListArray.from_arrays(offsets, flat),
        }, schema=schema)
        pq.write_table(table, folder / f"part-00000-of-00001-{part:05d}.parquet", row_group_size=5000)


@pytest.mark.slow
def test_a_million_rows_in_bounded_memory(tmp_path):
    make_scored(tmp_path / "scored")
    command = [sys.executable, "-m", "rmscore", "inspect", str(tmp_path / "scored"), "-o", str(tmp_path / "out")]
    peak_mib = peak_rss_mib(command, tmp_path)
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    print(f"\npeak RSS of `rmscore inspect` on {ROWS:,} rows: {peak_mib:,.0f} MiB")
    assert report["rows"] == ROWS and report["sample"]["is_sample"]
    assert report["length_bias"]["characters"]["within_prompts"]["mean"] > 0.3  # score = log(length) + noise
    assert peak_mib < 1024


@pytest.mark.slow
def test_build_pairs_memory_does_not_grow_with_the_bucket_count(tmp_path):
    # More buckets for the same rows is what a bigger input does (one bucket per ~64 MiB of columns).
    # Every bucket's pairs used to be in memory at once in the final merge, and each spill writer
    # kept up to 1Mi rows buffered, so the peak grew with the bucket count (and with the input).
    make_scored(tmp_path / "scored")
    peaks = {}
    for buckets in (14, 56):
        out = tmp_path / f"pairs-{buckets}.parquet"
        command = [sys.executable, "-m", "rmscore", "build-pairs", str(tmp_path / "scored"), "-o", str(out),
                   "--buckets", str(buckets)]
        peaks[buckets] = peak_rss_mib(command, tmp_path)
    print(f"\npeak RSS of `rmscore build-pairs` on {ROWS:,} rows by bucket count: {peaks}")
    assert pq.read_table(tmp_path / "pairs-14.parquet").equals(pq.read_table(tmp_path / "pairs-56.parquet"))
    assert peaks[56] < peaks[14] + 150
