"""Which rows report.html embeds: pure functions of the per-row numbers inspect already holds.

The page shows a bounded, stated sample so a 1M-row input does not make a 1 GB page: first the
extremes, then a seeded random draw. Each function returns the chosen global row indices (sorted)
and the parts of the sample, in the order they were taken, for the page to state.
"""

from __future__ import annotations

import numpy as np

EXTREME_SHARE = 10  # 1/10 of the budget for each extreme side, and for failed rows
LONGER_SHARE = 5  # pairs: 1/5 of the budget for the "chosen is only longer" candidates
SMALL_MARGIN_QUANTILE = 0.25  # "small margin": at most this quantile of every pair's margin


def scored_rows(score: np.ndarray, usable: np.ndarray, groups: np.ndarray, budget: int,
                seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """The highest and lowest scores, failed rows, then whole prompts drawn at random."""
    if budget >= len(score):
        return _every(len(score))
    picked = np.zeros(len(score), bool)
    parts = []
    ok = np.flatnonzero(usable)
    order = ok[np.lexsort((ok, -score[ok]))]  # (scored,) highest first, ties by row
    side = min(budget // EXTREME_SHARE, len(order) // 2)
    parts.append(_take(picked, order[:side], "highest", f"the {side:,} highest scores"))
    parts.append(_take(picked, order[len(order) - side:], "lowest", f"the {side:,} lowest scores"))
    rng = np.random.default_rng(seed)
    failed = np.flatnonzero(~usable)
    n_failed = min(budget // EXTREME_SHARE, len(failed))
    parts.append(_take(picked, np.sort(rng.choice(failed, n_failed, replace=False)), "failed",
                       f"{n_failed:,} of {len(failed):,} rows without a score, at random"))
    parts.append(_whole_prompts(picked, groups, budget - int(picked.sum()), rng))
    return np.flatnonzero(picked), [p for p in parts if p["rows"]]


def _whole_prompts(picked: np.ndarray, groups: np.ndarray, room: int, rng) -> dict:
    """Prompts in a random order, each with every completion not yet shown, while they fit."""
    alone = np.flatnonzero(groups < 0)  # no prompt_id: each row is its own prompt
    codes = groups
    if len(alone):  # a copy (8 bytes a row) only when needed
        codes = np.asarray(groups, np.int64).copy()
        codes[alone] = codes.max(initial=-1) + 1 + np.arange(len(alone))
    new = np.bincount(codes[~picked], minlength=codes.max(initial=-1) + 1)  # (prompts,) rows not yet shown
    chosen = []
    for g in rng.permutation(len(new)):
        if room <= 0:
            break
        if 0 < new[g] <= room:
            chosen.append(g)
            room -= new[g]
    taken = np.zeros(len(new), bool)  # a lookup table: np.isin sorted copies of every row's code
    taken[np.asarray(chosen, np.int64)] = True
    rows = np.flatnonzero(taken[codes] & ~picked)
    return _take(picked, rows, "prompts", f"{len(chosen):,} prompt(s) at random, with all their completions")


def pair_rows(margin: np.ndarray, chars_chosen: np.ndarray, chars_rejected: np.ndarray, budget: int,
              seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """The largest and smallest margins, "chosen is only longer" candidates, then pairs at random."""
    if budget >= len(margin):
        return _every(len(margin))
    picked = np.zeros(len(margin), bool)
    finite = np.flatnonzero(np.isfinite(margin))  # a NaN or infinite margin is no extreme
    order = finite[np.lexsort((finite, -margin[finite]))]  # (finite pairs,) largest margin first
    side = min(budget // EXTREME_SHARE, len(order) // 2)
    parts = [_take(picked, order[:side], "largest", f"the {side:,} largest margins"),
             _take(picked, order[len(order) - side:], "smallest", f"the {side:,} smallest margins")]
    rng = np.random.default_rng(seed)
    longer = np.flatnonzero(only_longer(margin, chars_chosen, chars_rejected) & ~picked)
    n_longer = min(budget // LONGER_SHARE, len(longer))
    parts.append(_take(picked, rng.choice(longer, n_longer, replace=False), "only_longer",
                       f"{n_longer:,} more of the {len(longer):,} other pairs where the chosen is only longer, "
                       "at random"))
    rest = np.flatnonzero(~picked)
    n_rest = min(budget - int(picked.sum()), len(rest))
    parts.append(_take(picked, rng.choice(rest, n_rest, replace=False), "random", f"{n_rest:,} pairs at random"))
    return np.flatnonzero(picked), [p for p in parts if p["rows"]]


def small_margin(margin: np.ndarray) -> float | None:
    """The margin at or under which a pair counts as won by a small margin."""
    margin = margin[np.isfinite(margin)]
    return float(np.quantile(margin, SMALL_MARGIN_QUANTILE)) if len(margin) else None


def only_longer(margin: np.ndarray, chars_chosen: np.ndarray, chars_rejected: np.ndarray) -> np.ndarray:
    """(pairs,) bool: the chosen answer is longer and its margin is small."""
    cut = small_margin(margin)
    if cut is None:
        return np.zeros(len(margin), bool)
    return (chars_chosen > chars_rejected) & (chars_rejected >= 0) & (margin <= cut)


def _every(n: int) -> tuple[np.ndarray, list[dict]]:
    return np.arange(n), [{"name": "every", "rows": n, "says": "every one"}] if n else []


def _take(picked: np.ndarray, rows: np.ndarray, name: str, says: str) -> dict:
    rows = rows[~picked[rows]]
    picked[rows] = True
    return {"name": name, "rows": int(len(rows)), "says": says}
