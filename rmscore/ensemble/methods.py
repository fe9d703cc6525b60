"""How several reward models' scores of the same rows become one score. Pure numpy: no I/O.

  mean-z  each model's scores standardised by its own mean and standard deviation over its usable
          rows (the whole input: `Standard`), then averaged. Reward models have arbitrary scales,
          so a raw mean lets the widest-spread model decide.
  mean    the average of the raw scores
  min     the lowest raw score
  vote    the share of models that rank the completion first within its prompt (highest score;
          equal scores go to input order, as everywhere in rmscore), among the completions usable
          for every model
A row is usable when every model scored it; other rows get no score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Standard:
    """Running mean and variance of one model's usable scores (Chan et al.'s parallel update)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        n, mean = len(values), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        delta, total = mean - self.mean, self.n + n
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.n, "mean": self.mean, "std": self.std}


def combine(method: str, scores: np.ndarray, usable: np.ndarray, groups: np.ndarray,
            standards: list[Standard]) -> np.ndarray:
    """(rows,) combined scores, NaN where not usable.

    Args:
        scores: (rows, models) raw scores, NaN where a model has none.
        usable: (rows,) every model scored the row.
        groups: (rows,) prompt codes; rows sorted by prompt, then input order (vote reads the order).
    """
    out = np.full(len(scores), np.nan)
    if method == "vote":
        out[usable] = votes(scores[usable], groups[usable])
        return out
    s = scores[usable]  # (k, models)
    if method == "mean-z":
        mean = np.array([st.mean for st in standards])
        std = np.array([st.std if st.std > 0 else 1.0 for st in standards])  # a constant model: all z = 0
        out[usable] = ((s - mean) / std).mean(axis=1)
    elif method == "mean":
        out[usable] = s.mean(axis=1)
    else:
        out[usable] = s.min(axis=1)
    return out


def votes(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(rows,) share of models whose top completion of the prompt is this row; rows in input order
    within each prompt."""
    rows, models = scores.shape
    count = np.zeros(rows)
    position = np.arange(rows)
    for m in range(models):
        order = np.lexsort((position, -scores[:, m], groups))  # by prompt, best first, then input order
        first = np.ones(rows, bool)
        first[1:] = groups[order][1:] != groups[order][:-1]
        count[order[first]] += 1
    return count / models


def pair_agreement(scores: np.ndarray, groups: np.ndarray) -> dict:
    """Over the pairs of rows within each prompt: the share that every model orders the same way
    (a tie in any model counts as not agreeing), and the share of prompts (of two rows or more)
    whose top row is the same for every model."""
    order = np.argsort(groups, kind="stable")
    cuts = np.flatnonzero(np.diff(groups[order])) + 1
    same = pairs = prompts = top = 0
    for rows in np.split(order, cuts):
        if len(rows) < 2:
            continue
        s = scores[rows]  # (n, models)
        upper = np.triu(np.ones((len(s), len(s)), bool), 1)
        diff = np.sign(s[:, None, :] - s[None, :, :])[upper]  # (pairs, models)
        same += int(((diff == diff[:, :1]).all(axis=1) & (diff[:, 0] != 0)).sum())
        pairs += len(diff)
        prompts += 1
        top += len(set(np.argmax(s, axis=0).tolist())) == 1
    return {"pairs": pairs, "pairs_all_agree": same / pairs if pairs else None,
            "prompts": prompts, "top_all_agree": top / prompts if prompts else None}
