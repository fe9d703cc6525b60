"""The statistics of `rmscore inspect`: pure functions of numpy arrays (no I/O, no plotting).

Rank correlation is Spearman's: Pearson's correlation of the ranks, tied values sharing their
average rank (what scipy.stats.spearmanr computes). Within groups (prompts), each group's
correlation is computed on ranks taken inside that group, then the groups are averaged with equal
weight: the length bias one prompt's pairs inherit. A group where either variable is constant has
no correlation and is counted as skipped, never as 0.

Summaries and histograms are over the finite values; the others are counted (`non_finite`). They
are computed on the values divided by the largest magnitude, then scaled back, so scores near
1e308 give no overflow (a mean, std or quantile of inf) either.
"""

from __future__ import annotations

import numpy as np

# Rows ranked at once within groups: group_ranks and within_groups work on whole groups, so they
# take them a range of group codes at a time (the same values, in the same order). At 1M rows one
# pass over every row held ~10 arrays of 8 bytes a row (~80 MiB): the peak of inspect grew with the input.
CHUNK_ROWS = 1 << 16
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 40


def summary(values: np.ndarray) -> dict:
    """count, mean, std (population), min, quantiles (linear interpolation) and max of the finite
    values; `non_finite` counts the others (NaN, +-inf), when there are any."""
    values, scale, left_out = _scaled(values)
    counted = {"non_finite": left_out} if left_out else {}
    if not len(values):
        return {"count": 0} | counted
    qs = np.quantile(values, QUANTILES) * scale
    return {"count": int(len(values)), "mean": float(values.mean() * scale), "std": float(values.std() * scale),
            "min": float(values.min() * scale), **{f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, qs)},
            "max": float(values.max() * scale)} | counted


def _scaled(values: np.ndarray) -> tuple[np.ndarray, float, int]:
    """(finite values / their largest magnitude, that magnitude, how many values were not finite)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    scale = float(np.abs(finite).max()) if len(finite) else 1.0
    scale = scale or 1.0
    return finite / scale, scale, int(len(values) - len(finite))


def histogram(values: np.ndarray, bins: int = BINS, log2: bool = False) -> dict:
    """Counts over equal-width bins from min to max of the finite values (of log2(values) when
    log2 is set)."""
    values, scale, _ = _scaled(values)
    if not len(values):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": (edges * scale).tolist(), "counts": counts.tolist(), "log2": log2}


def integer_histogram(values: np.ndarray) -> dict:
    """How many values equal each integer (steps per completion: 1, 2, 3, ...)."""
    found, counts = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(found, counts)}


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values get the average of the ranks they span."""
    x = np.asarray(x)
    if x.dtype.kind in "iu" and len(x):
        low, high = int(x.min()), int(x.max())
        if high - low < len(x) + 1024:  # lengths, counts: ranks from counts, no sort (one array of 8 bytes a row)
            counts = np.bincount(x - low if low else x)  # (values,)
            first = np.cumsum(counts) - counts  # (values,) 0-based position of each value's first row
            # as _average_ranks: (first position + (run size - 1) / 2) - group start (0) + 1
            return ((first + (counts - 1) / 2.0) - 0 + 1)[x - low if low else x]
    order = np.argsort(x)  # any order among ties: they all get the run's average
    new_run = _run_starts(x[order])
    return _ranks_by_run(order, new_run, None)


def group_ranks(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-based ranks of x within each group (ties averaged), in the input order."""
    x, groups = np.asarray(x), np.asarray(groups)
    if len(x) <= CHUNK_ROWS:
        return _group_ranks(x, groups)
    out = np.empty(len(x))
    for rows in _chunks(groups):
        out[rows] = _group_ranks(x[rows], groups[rows])
    return out


def _chunks(groups: np.ndarray):
    """Row selections holding whole groups, a range of group codes of about CHUNK_ROWS rows each,
    in the order of the codes (all rows at once when the codes are not small integers)."""
    if len(groups) <= CHUNK_ROWS or groups.dtype.kind not in "iu":
        yield slice(None)
        return
    low, high = int(groups.min()), int(groups.max())
    if high - low >= 4 * len(groups) + 1024:
        yield slice(None)
        return
    counts = np.bincount(groups - low if low else groups)  # (codes,)
    chunk = (np.cumsum(counts) - counts) // CHUNK_ROWS  # (codes,) which chunk each code starts in
    edges = np.r_[0, np.flatnonzero(np.diff(chunk)) + 1, len(counts)] + low
    for a, b in zip(edges[:-1], edges[1:]):
        yield np.flatnonzero((groups >= a) & (groups < b))


def _group_ranks(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups, dtype=np.int64)
    if not len(x):
        return np.zeros(0)
    # One integer sort key (group, then x's dense rank): much faster than np.lexsort on two keys.
    dense = _codes(x)  # (n,) 0..distinct-1 (or integers offset to 0)
    key = (groups - groups.min()) * (int(dense.max()) + 1) + dense  # (n,) int64
    del dense
    order = np.argsort(key)
    gs = groups[order]
    return _average_ranks(order, key[order], np.r_[True, gs[1:] != gs[:-1]])


def _average_ranks(order: np.ndarray, sorted_key: np.ndarray, new_group: np.ndarray) -> np.ndarray:
    """Ranks from a sort: `sorted_key` equal within a tie run, `new_group` True where a group starts."""
    if not len(order):
        return np.zeros(0)
    new_group = new_group.copy()
    new_group[0] = True
    new_run = _run_starts(sorted_key)
    new_run |= new_group
    return _ranks_by_run(order, new_run, new_group)


def _run_starts(sorted_key: np.ndarray) -> np.ndarray:
    """(n,) bool: True where a run of equal keys starts."""
    new_run = np.empty(len(sorted_key), bool)
    new_run[:1] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new_run[1:])
    return new_run


def _ranks_by_run(order: np.ndarray, new_run: np.ndarray, new_group: np.ndarray | None) -> np.ndarray:
    """Each tie run's average rank, (first position + (size - 1) / 2) - its group's first position
    + 1, computed once per run and in place: with every row its own run (float scores), a
    row-by-row version held ~8 arrays of 8 bytes a row at once (64 MiB at 1M rows), this ~4."""
    n = len(order)
    if not n:
        return np.zeros(0)
    run_first = np.flatnonzero(new_run)  # (runs,) sorted position where each tie run starts
    value = np.diff(np.r_[run_first, n])  # (runs,) run size
    value -= 1
    value = value / 2.0
    np.add(run_first, value, out=value)
    if new_group is not None:  # minus where the run's group starts (0 without groups)
        value -= np.flatnonzero(new_group)[np.cumsum(new_group[run_first]) - 1]
    else:
        value -= 0
    del run_first
    value += 1
    run_of = np.cumsum(new_run, dtype=np.int64 if n >= 2**31 else np.int32)  # (n,) 1 + tie run of each position
    run_of -= 1
    value = value[run_of]  # (n,) by sorted position
    del run_of
    out = np.empty(n, dtype=np.float64)
    out[order] = value
    return out


def _codes(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the order of the values: integers shifted to start at 0 when their
    range is small (no sort needed), else dense codes from np.unique."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < 4 * len(values) + 1024:
            return values.astype(np.int64) - low
    return np.unique(values, return_inverse=True)[1].ravel()


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Rank correlation over all rows; None when fewer than 2 rows or one variable is constant."""
    if len(x) < 2:
        return None
    dx, dy = ranks(x), ranks(y)  # (n,) each
    dx -= dx.mean()
    dy -= dy.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx <= 1e-9 or syy <= 1e-9:
        return None
    return float(np.clip(dx @ dy / np.sqrt(sxx * syy), -1.0, 1.0))


def within_groups(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """Spearman's correlation inside each group, averaged over the groups that have one.

    Returns mean (None if no group has one), groups (how many were averaged), skipped (groups of
    one row or with a constant variable), and the share of those groups with a positive correlation.
    """
    groups = np.asarray(groups)
    found, skipped = [], 0
    for rows in _chunks(groups):  # whole groups at a time, in the order of their codes: the same rho array
        rho, skip = _within(x[rows], y[rows], groups[rows])
        found.append(rho)
        skipped += skip
    rho = np.concatenate(found)  # (groups with one,)
    return {"mean": float(rho.mean()) if len(rho) else None, "groups": int(len(rho)),
            "skipped": skipped, "positive": float((rho > 0).mean()) if len(rho) else None}


def _within(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int]:
    """(rho of each group that has one, in the order of the groups; how many groups have none)."""
    groups = _codes(groups)  # (n,) 0..G-1, some codes possibly unused
    rx, ry = _group_ranks(x, groups), _group_ranks(y, groups)  # (n,) each
    count = np.bincount(groups)  # (G,)
    dx = rx - (np.bincount(groups, rx) / np.maximum(count, 1))[groups]
    dy = ry - (np.bincount(groups, ry) / np.maximum(count, 1))[groups]
    sxx, syy, sxy = (np.bincount(groups, a * b, minlength=len(count)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    defined = (count >= 2) & (sxx > 1e-9) & (syy > 1e-9)
    rho = np.clip(sxy[defined] / np.sqrt(sxx[defined] * syy[defined]), -1.0, 1.0)  # (groups with one,)
    return rho, int(((count > 0) & ~defined).sum())


def length_ratios(chosen: np.ndarray, rejected: np.ndarray) -> dict:
    """How much longer the chosen texts are than the rejected ones, pair by pair. The ratio has
    one denominator: the pairs where both answers have text (`ratio.count`); the pairs with an
    empty answer are counted in `ratio.left_out`."""
    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    both = (chosen > 0) & (rejected > 0)
    ratio = chosen[both] / rejected[both]  # (pairs with both texts,)
    n, m = max(len(chosen), 1), max(len(ratio), 1)
    left_out = {"empty_chosen": int(((chosen <= 0) & (rejected > 0)).sum()),
                "empty_rejected": int(((chosen > 0) & (rejected <= 0)).sum()),
                "both_empty": int(((chosen <= 0) & (rejected <= 0)).sum())}
    return {
        "pairs": int(len(chosen)),
        "chosen_longer": float((chosen > rejected).sum() / n),
        "same_length": float((chosen == rejected).sum() / n),
        "chosen_shorter": float((chosen < rejected).sum() / n),
        "ratio": summary(ratio) | {"over_1.5": float((ratio > 1.5).sum() / m), "over_2": float((ratio > 2).sum() / m),
                                   "left_out": left_out},
        "histogram": histogram(np.log2(ratio), log2=True),
        "chars_chosen": summary(chosen),
        "chars_rejected": summary(rejected),
    }


def pairwise_spearman(columns: dict[str, np.ndarray]) -> dict:
    """Rank correlation of every pair of columns (how PRM aggregates relate)."""
    names = list(columns)
    return {f"{a}~{b}": spearman(columns[a], columns[b]) for i, a in enumerate(names) for b in names[i + 1:]}
