"""The rows report.html embeds: a second pass over the input that keeps only the chosen rows.

Numbers come from the arrays inspect already holds (so the page's scores are the ones its
statistics use); this pass adds the texts, status and ids, batch by batch, for the chosen global
row indices only. Texts are cut to TEXT_CHARS (a prompt keeps its end: the last turn matters most).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.inspect import sample, stats
from rmscore.inspect.read_pairs import PairColumns
from rmscore.inspect.read_scored import BATCH_ROWS, ScoredColumns

TEXT_CHARS = 2000


def scored_page(cols: ScoredColumns, budget: int, texts: bool) -> dict:
    chosen, parts = sample.scored_rows(cols.score, cols.usable, cols.groups, budget)
    grouped = cols.usable & (cols.groups >= 0)
    rank = np.full(cols.rows, np.nan)
    rank[grouped] = stats.group_ranks(-cols.score[grouped], cols.groups[grouped])  # 1: the prompt's best
    prompts_n = int(cols.groups.max(initial=-1)) + 1
    sizes = np.bincount(cols.groups[cols.groups >= 0], minlength=prompts_n)  # (prompts,) completions
    ranked = np.bincount(cols.groups[grouped], minlength=prompts_n)  # (prompts,) of them with a finite score
    wanted = ["prompt_id", "completion_index", "status", "status_detail"] + (["completion", "prompt"] if texts else [])
    rows, prompts = [], {}
    for index, row in _read_rows(cols.files, chosen, wanted):
        g = int(cols.groups[index])
        item = {"row": int(index), "prompt_id": row.get("prompt_id"), "completion_index": row.get("completion_index"),
                "score": _num(cols.score[index]), "rank": _num(rank[index]), "chars": _count(cols.chars[index]),
                "status": row.get("status") or "(none)", "reason": row.get("status_detail"),
                "of": int(sizes[g]) if g >= 0 else 1, "ranked": int(ranked[g]) if g >= 0 else 0}
        if cols.tokens is not None:
            item["tokens"] = _count(cols.tokens[index])
        if texts:
            item["text"] = cut(row.get("completion"))
            _add_prompt(prompts, row)
        rows.append(item)
    return {"rows": rows, "prompts": prompts, "shown": len(rows), "of": cols.rows, "parts": parts}


def pairs_page(cols: PairColumns, budget: int, texts: bool) -> dict:
    margin = cols.margin
    chosen, parts = sample.pair_rows(margin, cols.chars_chosen, cols.chars_rejected, budget)
    wanted = ["prompt_id"] + (["prompt", "chosen", "rejected"] if texts else [])
    rows, prompts = [], {}
    for index, row in _read_rows([cols.file], chosen, wanted):
        item = {"row": int(index), "prompt_id": row.get("prompt_id"), "score_chosen": _num(cols.score_chosen[index]),
                "score_rejected": _num(cols.score_rejected[index]), "margin": _num(margin[index]),
                "chars_chosen": _count(cols.chars_chosen[index]), "chars_rejected": _count(cols.chars_rejected[index])}
        if texts:
            item["chosen"] = cut(answer(row.get("chosen")))
            item["rejected"] = cut(answer(row.get("rejected")))
            _add_prompt(prompts, row)
        rows.append(item)
    longer = sample.only_longer(margin, cols.chars_chosen, cols.chars_rejected)
    return {"rows": rows, "prompts": prompts, "shown": len(rows), "of": len(margin), "parts": parts,
            "small_margin": sample.small_margin(margin), "only_longer": int(longer.sum()),
            "only_longer_shown": int(longer[chosen].sum())}


def _read_rows(files: list[Path], chosen: np.ndarray, columns: list[str]):
    """(global index, row dict) for each chosen index, in order, reading the files batch by batch."""
    start = 0
    for path in files:
        reader = pq.ParquetFile(path)
        have = [c for c in columns if c in reader.schema_arrow.names]
        for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=have):
            lo, hi = np.searchsorted(chosen, [start, start + batch.num_rows])
            if hi > lo:
                local = pa.array(chosen[lo:hi] - start, pa.int64())
                yield from zip(chosen[lo:hi].tolist(), batch.take(local).to_pylist())
            start += batch.num_rows


def _add_prompt(prompts: dict, row: dict) -> None:
    """Each prompt's text once, by prompt_id (rows without one show no prompt)."""
    if row.get("prompt_id") is not None and row["prompt_id"] not in prompts:
        prompts[row["prompt_id"]] = cut(conversation(row.get("prompt")), keep_end=True)


def conversation(prompt) -> str:
    """A prompt as text: a plain string, or one "role: content" paragraph per message."""
    if prompt is None or isinstance(prompt, str):
        return prompt or ""
    if len(prompt) == 1 and prompt[0].get("role") == "user":
        return prompt[0].get("content") or ""
    return "\n\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in prompt)


def answer(value) -> str:
    """A pairs file's answer: the string itself, or the last message's content."""
    if value is None or isinstance(value, str):
        return value or ""
    return (value[-1].get("content") or "") if value else ""


def cut(text: str | None, keep_end: bool = False) -> str:
    text = text or ""
    if len(text) <= TEXT_CHARS:
        return text
    note = f"[… {len(text) - TEXT_CHARS:,} characters cut …]"
    return f"{note} {text[-TEXT_CHARS:]}" if keep_end else f"{text[:TEXT_CHARS]} {note}"


def _count(value) -> int | None:
    return int(value) if value >= 0 else None  # -1: no text (or no count) in that row


def _num(value) -> float | None:
    return float(value) if np.isfinite(value) else None
