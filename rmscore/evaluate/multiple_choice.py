"""Multiple-choice rows as prompt + completions rows for the scorer.

A row is a question with either one column of {choices, labels} (TruthfulQA `mc1_targets`) or
separate `choices` and `labels` columns. Each choice becomes a completion of the question. Choices
are shuffled with a seeded RNG first: the correct answer sits at index 0 in the raw TruthfulQA
files, and a shuffle guarantees no position effect can pass for skill. (Top-1 with ties counts
tied choices evenly, so scoring is order-free anyway; tests check both.)
A malformed row is written with null completions, so the scorer records it as an invalid row.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rmscore.config import McColumns
from rmscore.errors import InputError
from rmscore.read.rows import Source


@dataclass(frozen=True)
class McLayout:
    question: str
    targets: str | None = None  # one column of {choices, labels}
    choices: str | None = None
    labels: str | None = None


def detect_mc(columns: list[str], names: McColumns) -> McLayout | None:
    """The multiple-choice layout of these columns, or None if they are not multiple choice."""
    cols = set(columns)
    for given in (names.question, names.targets, names.choices, names.labels):
        if given is not None and given not in cols:
            raise InputError(f"column {given!r} not found", f"the input has: {', '.join(columns)}")
    question = names.question or next((c for c in ("question", "prompt") if c in cols), None)
    targets = names.targets or ("mc1_targets" if "mc1_targets" in cols and not names.choices else None)
    choices = names.choices or ("choices" if "choices" in cols else None)
    labels = names.labels or ("labels" if "labels" in cols else None)
    if question is None or not (targets or (choices and labels)):
        return None
    return McLayout(question, targets=targets) if targets else McLayout(question, choices=choices, labels=labels)


def convert(source: Source, layout: McLayout, dest: Path, seed: int, limit: int | None = None) -> Counter:
    """Write one prompt + completions + labels row per input row (same order, so input_index
    still names the source row). Returns the count of malformed rows by problem."""
    problems: Counter = Counter()
    tmp = dest.with_name(f".tmp-{dest.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as out:
        for row in source.rows():
            if limit is not None and row.index >= limit:
                break
            converted, problem = mc_row(row.data, layout, random.Random(f"{seed}:{row.index}"))
            if problem:
                problems[problem] += 1
            out.write(json.dumps(converted, ensure_ascii=False) + "\n")
    os.replace(tmp, dest)
    return problems


def mc_row(data: dict | None, layout: McLayout, rng: random.Random) -> tuple[dict, str | None]:
    """(row for the scorer, problem or None). Choices and labels are shuffled together."""
    if data is None:
        return _bad(None), "unreadable row"
    question = data.get(layout.question)
    if layout.targets:
        targets = data.get(layout.targets)
        choices, labels = (targets.get("choices"), targets.get("labels")) if isinstance(targets, dict) else (None, None)
    else:
        choices, labels = data.get(layout.choices), data.get(layout.labels)
    problem = _problem(choices, labels)
    if problem:
        return _bad(question), problem
    order = list(range(len(choices)))
    rng.shuffle(order)
    return {"prompt": question, "completions": [choices[i] for i in order],
            "labels": [int(labels[i]) for i in order], "choice_order": order}, None


def _problem(choices, labels) -> str | None:
    if not isinstance(choices, list) or not isinstance(labels, list) or not choices:
        return "choices or labels missing"
    if len(choices) != len(labels):
        return "choices and labels differ in length"
    if any(label not in (0, 1) for label in labels):
        return "labels are not 0/1"
    if not any(labels):
        return "no correct choice"
    return None


def _bad(question) -> dict:
    return {"prompt": question, "completions": None, "labels": None, "choice_order": None}
