"""Scored Parquet files written by hand with rmscore score's schema, for build-pairs tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.store.output import BASE_SCHEMA


def rows(prompt_id, scores, *, texts=None, statuses=None, input_index=0, prompt=None, first=0, **extra):
    """One input row's completions: completion j has score scores[j] and text texts[j]."""
    texts = texts or [f"answer {prompt_id}-{first + j}" for j in range(len(scores))]
    statuses = statuses or ["ok"] * len(scores)
    prompt = prompt if prompt is not None else f"question {prompt_id}"
    is_text = isinstance(prompt, str)
    messages = [{"role": "user", "content": prompt}] if is_text else prompt
    out = []
    for j, (score, text, status) in enumerate(zip(scores, texts, statuses, strict=True)):
        row = {"input_index": input_index, "completion_index": first + j, "prompt_id": prompt_id, "side": None,
               "prompt": messages, "prompt_is_text": is_text, "completion": text, "score": score,
               "num_tokens": 10, "status": status, "status_detail": None}
        out.append(row | {k: v[j] for k, v in extra.items()})
    return out


def write(path: Path, table_rows: list[dict], model: str | None = "tiny-rm", extra_fields=()) -> Path:
    """A part file with BASE_SCHEMA (+ extra fields) and the provenance metadata rmscore writes."""
    meta = {"rmscore": json.dumps({"model": model, "model_type": "seq-cls"})} if model else None
    schema = pa.schema(list(BASE_SCHEMA) + list(extra_fields), metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(table_rows, schema=schema), path)
    return path
