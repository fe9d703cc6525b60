"""Reward-model accuracy on preference pairs and multiple-choice questions, from scored columns.

Pure: takes the columns read from a scored folder, returns numbers. Ties count one half for pairs
and are shared evenly for multiple choice (the expected accuracy of a random tie-break), so a
model that scores everything the same gets exactly the chance level, wherever the answer sits.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from rmscore.errors import InputError
from rmscore.evaluate.bestofn import pick_best
from rmscore.store.scored import cell, usable

QUANTILES = {"p5": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}


def pairs(cols: dict[str, list]) -> tuple[dict[int, float], Counter]:
    """input_index -> score(chosen) - score(rejected), for pairs whose two sides were scored."""
    sides: dict[int, dict[str, float]] = {}
    for i, index in enumerate(cols["input_index"]):
        entry = sides.setdefault(index, {})
        if usable(cols, i):
            entry[cols["side"][i]] = float(cols["score"][i])
    margins, skipped = {}, Counter()
    for index in sorted(sides):
        entry = sides[index]
        if "chosen" in entry and "rejected" in entry:
            margins[index] = entry["chosen"] - entry["rejected"]
        else:
            skipped["pairs with a side not scored"] += 1
    return margins, skipped


def multiple_choice(cols: dict[str, list]) -> tuple[dict[int, tuple[float, float]], Counter]:
    """input_index -> (expected top-1 accuracy, chance level) for questions whose choices were all scored."""
    choices: dict[int, list[tuple]] = {}
    for i, index in enumerate(cols["input_index"]):
        is_label = cols["labels"][i] is not None
        choices.setdefault(index, []).append(
            (usable(cols, i) and is_label, cols["score"][i], cell(cols, "labels", i) if is_label else None))
    results, skipped = {}, Counter()
    for index in sorted(choices):
        rows = choices[index]
        if not all(ok for ok, _, _ in rows):
            skipped["questions with a choice not scored"] += 1
            continue
        scores, labels = [s for _, s, _ in rows], [float(label) for _, _, label in rows]
        results[index] = (pick_best(scores, labels, len(rows)), sum(labels) / len(labels))
    return results, skipped


def summarise(task: str, values: dict, subsets: dict[int, str] | None) -> dict:
    if not values:
        raise InputError("nothing could be scored", "see the status and status_detail columns of the scores")
    if task == "pairs":
        wins = {i: 1.0 if m > 0 else 0.5 if m == 0 else 0.0 for i, m in values.items()}
        out = {"pairs": len(values), "accuracy": _mean(wins.values()),
               "ties": _mean(float(m == 0) for m in values.values()), "margin": margin_stats(list(values.values()))}
    else:
        wins = {i: top1 for i, (top1, _) in values.items()}
        out = {"questions": len(values), "top1_accuracy": _mean(wins.values()),
               "chance": _mean(chance for _, chance in values.values())}
    if subsets is not None:
        groups: dict[str, list[float]] = {}
        for index, value in wins.items():
            groups.setdefault(subsets.get(index, "None"), []).append(value)
        out["subsets"] = {name: {"count": len(v), "accuracy": _mean(v)} for name, v in sorted(groups.items())}
    return out


def margin_stats(margins: list[float], bins: int = 40) -> dict:
    values = np.asarray(margins, dtype=float)
    counts, edges = np.histogram(values, bins=bins)
    stats = {"mean": float(values.mean()), "std": float(values.std())}
    stats |= {name: float(np.quantile(values, q)) for name, q in QUANTILES.items()}
    return stats | {"histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
