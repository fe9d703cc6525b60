"""The rows report.html embeds: a second pass over the input that keeps only the chosen rows.

Numbers come from the arrays inspect already holds (so the page's scores are the ones its
statistics use); this pass adds the texts, status and ids, batch by batch, for the chosen global
row indices only. Texts are cut to TEXT_CHARS (a prompt keeps its end: the last turn matters most).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmscore.inspect import sample, stats
from rmscore.inspect.read_pairs import PairColumns
from rmscore.inspect.read_scored import BATCH_ROWS, ScoredColumns, batch_rows, release_memory, to_floats, to_ints
from rmscore.inspect.text import short_model
from rmscore.pairs.buckets import MODEL_SCORES

TEXT_CHARS = 2000


def scored_page(cols: ScoredColumns, budget: int, texts: bool) -> dict:
    chosen, parts = sample.scored_rows(cols.score, cols.usable, cols.groups, budget)
    grouped = cols.usable & (cols.groups >= 0)
    prompts_n = int(cols.groups.max(initial=-1)) + 1
    rank = _ranks_of(chosen, cols.score, cols.groups, grouped, prompts_n)  # 1: the prompt's best
    sizes = np.bincount(cols.groups[cols.groups >= 0], minlength=prompts_n)  # (prompts,) completions
    ranked = np.bincount(cols.groups[grouped], minlength=prompts_n)  # (prompts,) of them with a finite score
    wanted = ["prompt_id", "completion_index", "status", "status_detail"] + (["completion", "prompt"] if texts else [])
    models = model_scores(cols)  # (rows, models) or None: a combined folder's own scores per model
    if models is not None:
        model_ranks, disagree = disagreement(models, cols.groups, cols.usable)
    rows, prompts = [], {}
    for index, row in _read_rows(cols.files, chosen, wanted):
        g = int(cols.groups[index])
        item = {"row": int(index), "prompt_id": row.get("prompt_id"), "completion_index": row.get("completion_index"),
                "score": _num(cols.score[index]), "rank": _num(rank.get(int(index), np.nan)),
                "chars": _count(cols.chars[index]),
                "status": row.get("status") or "(none)", "reason": row.get("status_detail"),
                "of": int(sizes[g]) if g >= 0 else 1, "ranked": int(ranked[g]) if g >= 0 else 0}
        if cols.tokens is not None:
            item["tokens"] = _count(cols.tokens[index])
        if models is not None:
            item["model_scores"] = [_num(x) for x in models[index]]
            item["model_ranks"] = [_num(x) for x in model_ranks[index]]
            item["disagree"] = bool(disagree[index])
        if texts:
            item["text"] = cut(row.get("completion"))
            _add_prompt(prompts, row)
        rows.append(item)
    page = {"rows": rows, "prompts": prompts, "shown": len(rows), "of": cols.rows, "parts": parts}
    if models is not None:
        names = [short_model(n) for n in cols.metadata.get("models") or []]
        page |= {"models": names + [f"model {m}" for m in range(len(names), models.shape[1])],
                 "disagree": int(disagree.sum()), "disagree_prompts": len(np.unique(cols.groups[disagree]))}
    return page


def _ranks_of(chosen: np.ndarray, score: np.ndarray, groups: np.ndarray, grouped: np.ndarray,
              prompts_n: int) -> dict[int, float]:
    """Each chosen row's rank within its prompt by score (rows without one: absent). Only the
    prompts of the chosen rows are ranked: ranking every prompt held ~5 arrays of 8 bytes a row
    (1M rows: ~40 MiB) for the few thousand rows the page shows."""
    shown = np.zeros(prompts_n + 1, bool)  # the last one: what code -1 (no prompt_id) looks up
    codes = groups[chosen]
    shown[codes[codes >= 0]] = True
    rows = np.flatnonzero(grouped & shown[groups])  # (rows of those prompts,)
    ranks = stats.group_ranks(-score[rows], groups[rows])
    keep = np.isin(rows, chosen)
    return dict(zip(rows[keep].tolist(), ranks[keep].tolist()))


def model_scores(cols: ScoredColumns) -> np.ndarray | None:
    """(rows, models) each model's own score (NaN where none) when every file has `model_scores`
    (rmscore combine's output), else None. One more pass reading that column only."""
    if not cols.files or not all(MODEL_SCORES in pq.read_schema(f).names for f in cols.files):
        return None
    width = len(cols.metadata.get("models") or [])
    parts = []
    for path in cols.files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=[MODEL_SCORES]):
            lists = batch.column(0)
            lengths = to_ints(pc.list_value_length(lists))
            width = width or int(lengths.max(initial=0))
            out = np.full((batch.num_rows, width), np.nan)
            full = np.flatnonzero(lengths == width)  # a row of another length (none in combine's output): NaN
            if width and len(full):
                out[full] = to_floats(pc.list_flatten(lists.take(pa.array(full)))).reshape(len(full), width)
            parts.append(out)
    return np.concatenate(parts) if parts else np.zeros((0, width))


def disagreement(models: np.ndarray, groups: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's rank within its prompt by each model's own score (1: the best; ties share the
    average rank), among the prompt's rows that are scored and have every model's score; and
    (rows,) bool: "models disagree", that row's rank is not the same for every model."""
    ranks = np.full(models.shape, np.nan)  # (rows, models)
    rows = usable & (groups >= 0) & np.isfinite(models).all(axis=1)
    for m in range(models.shape[1]):
        ranks[rows, m] = stats.group_ranks(-models[rows, m], groups[rows])
    disagree = np.zeros(len(models), bool)
    disagree[rows] = (ranks[rows] != ranks[rows, :1]).any(axis=1)
    return ranks, disagree


def pairs_page(cols: PairColumns, budget: int, texts: bool) -> dict:
    margin = cols.margin
    chosen, parts = sample.pair_rows(margin, cols.chars_chosen, cols.chars_rejected, budget)
    wanted = ["prompt_id"] + (["prompt", "chosen", "rejected"] if texts else [])
    rows, prompts = [], {}
    for index, row in _read_rows([cols.file], chosen, wanted):
        item = {"row": int(index), "prompt_id": row.get("prompt_id"), "score_chosen": _num(cols.score_chosen[index]),
                "score_rejected": _num(cols.score_rejected[index]), "margin": _num(margin[index]),
                "chars_chosen": _count(cols.chars_chosen[index]), "chars_rejected": _count(cols.chars_rejected[index])}
        if cols.agreement is not None:
            item["agreement"] = _num(cols.agreement[index])
        if texts:
            item["chosen"] = cut(answer(row.get("chosen")))
            item["rejected"] = cut(answer(row.get("rejected")))
            _add_prompt(prompts, row)
        rows.append(item)
    longer = sample.only_longer(margin, cols.chars_chosen, cols.chars_rejected)
    page = {"rows": rows, "prompts": prompts, "shown": len(rows), "of": len(margin), "parts": parts,
            "small_margin": sample.small_margin(margin), "only_longer": int(longer.sum()),
            "only_longer_shown": int(longer[chosen].sum())}
    if cols.agreement is not None:  # "models disagree": not every model's own scores prefer the chosen answer
        page["disagree"] = int((cols.agreement < 1).sum())
    return page


def _read_rows(files: list[Path], chosen: np.ndarray, columns: list[str]):
    """(global index, row dict) for each chosen index, in order, reading the files batch by batch."""
    start = 0
    for path in files:
        reader = pq.ParquetFile(path)
        have = [c for c in columns if c in reader.schema_arrow.names]
        for batch in reader.iter_batches(batch_size=batch_rows(reader, have), columns=have):
            lo, hi = np.searchsorted(chosen, [start, start + batch.num_rows])
            if hi > lo:
                local = pa.array(chosen[lo:hi] - start, pa.int64())
                yield from zip(chosen[lo:hi].tolist(), batch.take(local).to_pylist())
            start += batch.num_rows
        release_memory()


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
