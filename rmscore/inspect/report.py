"""The content of inspect.json: statistics of the columns read, as plain JSON-ready values.

Length is measured two ways for scored output: characters of the completion text (tokenizer-free,
the measure pairs files and build-pairs --max-length-ratio use too), and num_tokens, the tokens the
model read (prompt included). Within one prompt the prompt is the same, so the within-prompt
correlation with num_tokens is the correlation with completion tokens; over all rows it mixes in
prompt length.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import numpy as np

from rmscore.inspect import stats
from rmscore.inspect.read_pairs import PairColumns
from rmscore.inspect.read_scored import AGGREGATES, Example, ScoredColumns


def scored_report(cols: ScoredColumns, inputs: list[str], texts: bool = True) -> dict:
    ok = cols.usable
    meta = cols.metadata
    report = {
        "kind": "scored",
        "inputs": list(inputs),
        "files": len(cols.files),
        "model": meta.get("model"),
        "model_type": meta.get("model_type"),
        "score_column": cols.score_column,
        "rows": cols.rows,
        "scored_rows": int(ok.sum()),
        "non_finite": dict(cols.non_finite),  # status ok/truncated but no finite score: left out of every statistic
        "status": {s: {"rows": n, "reasons": dict(cols.reasons.get(s, Counter()).most_common())}
                   for s, n in cols.status.most_common()},
        "score": stats.summary(cols.score[ok]) | {"histogram": stats.histogram(cols.score[ok])},
        "length": {name: stats.summary(values[ok & (values >= 0)]) for name, values in _lengths(cols).items()},
        "length_bias": length_bias(cols.score, _lengths(cols), cols.groups, ok),
        "sample": {"rows": cols.drawn, "of": cols.rows, "scored_in_sample": len(cols.sample),
                   "is_sample": cols.drawn < cols.rows},
        "examples": {side: [_example(e, texts) for e in getattr(cols, side)] for side in ("highest", "lowest")},
    }
    if "rewards" in cols.wide:
        report["objectives"] = objectives(cols)
    if cols.steps is not None:
        report["steps"] = steps(cols)
    if "model_scores" in cols.wide:
        report["agreement"] = agreement(cols)
    return report


def agreement(cols: ScoredColumns) -> dict:
    """A combined folder (rmscore combine): how often its models order the same completions of a
    prompt alike, over the sampled scored rows, overall and for each pair of models."""
    from rmscore.ensemble.methods import pair_agreement

    scores, groups = cols.wide["model_scores"], cols.groups[cols.sample]  # (k, models), (k,)
    scores, groups = scores[groups >= 0], groups[groups >= 0]
    names = list(cols.metadata.get("models") or [])
    names += [f"model {m}" for m in range(len(names), scores.shape[1])]
    pairs = [{"models": [a, b], "spearman_within_prompts": stats.within_groups(scores[:, a], scores[:, b], groups),
              "same_order": pair_agreement(scores[:, [a, b]], groups)["pairs_all_agree"]}
             for a, b in combinations(range(scores.shape[1]), 2)]
    return {"models": names, "all": pair_agreement(scores, groups), "by_pair": pairs}


def _lengths(cols: ScoredColumns) -> dict[str, np.ndarray]:
    lengths = {"characters": cols.chars}
    if cols.tokens is not None:
        lengths["tokens"] = cols.tokens
    return lengths


def length_bias(score: np.ndarray, lengths: dict[str, np.ndarray], groups: np.ndarray, ok: np.ndarray) -> dict:
    """Rank correlation of score with each length, over all rows and averaged within prompts."""
    out = {}
    for name, length in lengths.items():
        rows = ok & (length >= 0)
        grouped = rows & (groups >= 0)
        out[name] = {"all_rows": stats.spearman(length[rows], score[rows]),
                     "within_prompts": stats.within_groups(length[grouped], score[grouped], groups[grouped])}
    return out


def objectives(cols: ScoredColumns) -> list[dict]:
    """One entry per ArmoRM objective, over the sampled scored rows."""
    rewards = cols.wide["rewards"]  # (k, objectives)
    gating = cols.wide.get("gating_output")  # (k, objectives) or None
    names = list(cols.metadata.get("objectives") or [])
    names += [f"objective_{j}" for j in range(len(names), rewards.shape[1])]
    length, score = cols.chars[cols.sample], cols.score[cols.sample]  # (k,) each
    out = []
    for j in range(rewards.shape[1]):
        values = rewards[:, j]
        rows = np.isfinite(values) & (length >= 0)
        out.append({"name": names[j], **stats.summary(values[rows]),
                    "spearman_length": stats.spearman(length[rows], values[rows]),
                    "spearman_score": stats.spearman(score[rows], values[rows]),
                    "gating_mean": float(np.nanmean(gating[:, j])) if gating is not None and len(gating) else None})
    return out


def steps(cols: ScoredColumns) -> dict:
    """Process reward models: steps per completion (all scored rows), step scores and the four
    aggregates (sampled rows), and how the aggregates rank the same completions."""
    per_row = cols.steps[cols.usable & (cols.steps >= 0)]
    step_scores = cols.wide.get("step_scores", np.zeros(0))
    step_scores = step_scores[np.isfinite(step_scores)]
    aggregates = {name: cols.wide[name] for name in AGGREGATES if name in cols.wide}
    out = {
        "aggregate": cols.metadata.get("aggregate"),  # which one `score` is
        "steps_per_completion": stats.summary(per_row) | {"counts": stats.integer_histogram(per_row)},
        "step_scores": stats.summary(step_scores) | {"histogram": stats.histogram(step_scores)},
        "aggregates": {name: stats.summary(v[np.isfinite(v)]) for name, v in aggregates.items()},
        "aggregate_spearman": stats.pairwise_spearman(aggregates),
    }
    if "score_min" in aggregates and "score_last" in aggregates:
        both = np.isfinite(aggregates["score_min"]) & np.isfinite(aggregates["score_last"])
        same = aggregates["score_min"][both] == aggregates["score_last"][both]
        out["min_is_last"] = float(same.mean()) if both.any() else None  # the weakest step is the final one
    return out


def _example(example: Example, texts: bool) -> dict:
    out = {"score": example.score, "chars": example.chars, "prompt_id": example.prompt_id}
    return out | ({"prompt": example.prompt, "completion": example.text} if texts else {})


def pairs_report(cols: PairColumns) -> dict:
    have = (cols.chars_chosen >= 0) & (cols.chars_rejected >= 0)
    return {
        "kind": "pairs",
        "inputs": [str(cols.file)],
        "model": cols.metadata.get("model"),
        "build_pairs": cols.metadata.get("build_pairs"),
        "pairs": int(len(cols.margin)),
        "prompts": int(len(np.unique(cols.groups))),
        "margin": stats.summary(cols.margin) | {"histogram": stats.histogram(cols.margin)},
        "length": stats.length_ratios(cols.chars_chosen[have], cols.chars_rejected[have]),
        "length_bias": {"characters": {"within_prompts": pair_groups_bias(cols)}},
    }


def strict(value):
    """`value` with every float that is not finite as None: inspect.json is strict JSON."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pair_groups_bias(cols: PairColumns) -> dict:
    """Rank correlation of score with length within each prompt, over the distinct completions of
    its pairs (a completion in several pairs counts once)."""
    points = np.column_stack([
        np.r_[cols.groups, cols.groups], np.r_[cols.chars_chosen, cols.chars_rejected],
        np.r_[cols.score_chosen, cols.score_rejected]])  # (2 * pairs, 3): group, length, score
    points = points[(points[:, 1] >= 0) & np.isfinite(points[:, 2])]
    points = np.unique(points, axis=0)
    return stats.within_groups(points[:, 1], points[:, 2], points[:, 0])
