"""Best-of-N accuracy curves: how often a selector picks a correct completion out of N.

For a prompt with M scored completions, a draw is N of them taken uniformly at random without
replacement; a selector picks one answer from the draw; the accuracy at N is the expected label of
that pick, averaged over prompts. Expectations are computed exactly over all C(M, N) draws by
combinatorics, never sampled, with one exception: the reward-weighted vote of a prompt with more
than `max_cells` / M draws is a seeded Monte-Carlo mean, reported with its standard error.

Selectors:
  reward_model   the highest-scored completion (tied top scores share the pick evenly)
  random         any one completion: the mean label, whatever N
  oracle         right if any completion in the draw is right
  majority_vote  the most frequent answer (tied answers share the pick evenly)
  weighted_vote  the answer with the largest sum of weights (exp(score) by default), compared as
                 logsumexp per answer so that no weight underflows
Completions without an answer (None or "") abstain from votes; a draw where every completion
abstains counts as wrong. An answer's label is the mean label of the completions that gave it
(they agree whenever labels come from checking the answer).

Pure: no torch, no I/O.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from rmscore.errors import ConfigError, InputError

SELECTORS = ("reward_model", "random", "oracle", "majority_vote", "weighted_vote")
VOTE_WEIGHTS = ("exp", "score")
MAX_CELLS = 2**22  # votes enumerate every draw while draws x completions stays under this (4 MB)


@dataclass
class Group:
    """One prompt's scored completions."""

    scores: list[float]
    labels: list[float]  # 1.0 right, 0.0 wrong
    answers: list | None = None  # final answers, for the votes; None or "" = no answer


@dataclass
class Curves:
    ns: list[int]
    accuracy: dict[str, list[float]]  # selector -> accuracy at each N
    stderr: dict[str, list[float]]  # Monte-Carlo standard error (0.0 where exact)
    prompts: int
    completions: int
    capped: list[int]  # prompts with fewer than N completions at each N: they use all they have
    sampled: list[int] = field(default_factory=list)  # prompts whose weighted vote at N was sampled


def pick_best(scores: list[float], labels: list[float], n: int) -> float:
    """Expected label of the top-scored completion of a random n-subset, ties shared evenly.

    A tie group (t completions at one score, b scored strictly below it) holds the subset's top
    score iff the subset lies within those b + t completions and not all below them:
    C(b+t, n) - C(b, n) of the C(M, n) subsets. The pick is then uniform over the group by
    symmetry, so the group contributes its mean label. Integer arithmetic until the last division.
    """
    total = math.comb(len(scores), n)
    expected, below = 0.0, 0
    for _, tied in itertools.groupby(sorted(zip(scores, labels)), key=lambda pair: pair[0]):
        group = [label for _, label in tied]
        wins = math.comb(below + len(group), n) - math.comb(below, n)
        expected += wins / total * (sum(group) / len(group))
        below += len(group)
    return expected


def random_pick(labels: list[float]) -> float:
    return sum(labels) / len(labels)


def oracle(labels: list[float], n: int) -> float:
    """P(a random n-subset holds a right completion) = 1 - C(M - c, n) / C(M, n)."""
    m, right = len(labels), int(sum(1 for label in labels if label == 1))
    return 1.0 - math.comb(m - right, n) / math.comb(m, n)


def majority_vote(answers: list, labels: list[float], n: int) -> float:
    """Exact expected label of the most frequent answer in a random n-subset, ties shared evenly.

    For each winning count v, a dynamic programme over answers counts the draws where every answer
    appears at most v times and T answers exactly v times, accumulating ways x (right among the
    T) / T. Ways are weighted by binomial probabilities with p = n/M rather than binomial
    coefficients: every n-draw gets the same factor p^n (1-p)^(M-n), so ratios are unchanged and
    nothing overflows for large M.
    """
    ids, right = _answer_ids(answers, labels)
    m, p = len(labels), n / len(labels)
    counts = np.bincount(ids[ids >= 0], minlength=len(right))
    abstain = int((ids < 0).sum())
    expected = 0.0
    for v in range(1, min(n, int(counts.max(initial=0))) + 1):
        ways = np.zeros((n + 1, n // v + 2))  # (completions drawn so far, answers drawn exactly v times)
        hits = np.zeros_like(ways)  # the same, weighted by how many of those answers are right
        ways[0, 0] = 1.0
        for count, label in zip(counts, right):
            ways, hits = _add_answer(ways, hits, int(count), label, v, p)
        ways, hits = _add_answer(ways, hits, abstain, 0.0, None, p)  # any number, never a winner
        expected += float((hits[n, 1:] / np.arange(1, ways.shape[1])).sum())
    return expected / _binom_pmf(m, n, p)


def _add_answer(ways, hits, count: int, label: float, v: int | None, p: float):
    """Fold one answer with `count` completions into the tables: draw j <= v of them."""
    rows, cols = ways.shape
    new_ways, new_hits = np.zeros_like(ways), np.zeros_like(hits)
    top = count if v is None else min(count, v)
    for j in range(min(top, rows - 1) + 1):
        weight, at_v = _binom_pmf(count, j, p), int(j == v)
        src_ways, src_hits = ways[: rows - j, : cols - at_v], hits[: rows - j, : cols - at_v]
        new_ways[j:, at_v:] += weight * src_ways
        new_hits[j:, at_v:] += weight * (src_hits + label * at_v * src_ways)
    return new_ways, new_hits


def _binom_pmf(m: int, j: int, p: float) -> float:
    if p >= 1.0:
        return 1.0 if j == m else 0.0
    log_comb = math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1)
    return math.exp(log_comb + j * math.log(p) + (m - j) * math.log1p(-p))


def weighted_vote(answers: list, labels: list[float], log_weights, n: int, seed=0,
                  max_cells: int = MAX_CELLS, samples: int = 2000) -> tuple[float, float]:
    """Expected label of the answer with the largest weight sum in a random n-subset, ties shared
    evenly; weights are given as logs (see log_weights). Returns (estimate, its variance): exact
    over all subsets when C(M, n) x M is at most `max_cells` (variance 0), else the mean over
    `samples` random draws seeded with `seed`."""
    return Ballot(answers, labels).expect(np.asarray(log_weights, dtype=float), n, seed, max_cells, samples)


class Ballot:
    """One prompt's answers, set up once for votes at every N."""

    def __init__(self, answers: list, labels: list[float]):
        self.ids, self.right = _answer_ids(answers, labels)  # (M,), (K,)
        self.m = len(self.ids)

    def expect(self, log_weights: np.ndarray, n: int, seed, max_cells: int, samples: int) -> tuple[float, float]:
        if enumerable(self.m, n, max_cells):
            return float(self.winners(_all_draws(self.m, n), log_weights).mean()), 0.0
        keys = np.random.default_rng(seed).random((samples, self.m))  # (S, M); a row's n smallest: a uniform draw
        draws = keys <= np.partition(keys, n - 1, axis=1)[:, n - 1 : n]
        values = self.winners(draws, log_weights)
        return float(values.mean()), float(values.var(ddof=1) / samples)

    def winners(self, draws: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
        """The label of each draw's winning answer (ties: mean label of the tied answers).

        Answers are compared by the log of their weight sum (a logsumexp), so a weight exp(-30)
        next to exp(0), or exp(-801) next to exp(-800), still counts where plain sums round it
        away or underflow. Completions are summed largest first, so answers holding the same
        scores get the same totals: an exact tie.
        """
        if not len(self.right):
            return np.zeros(len(draws))
        answering = self.ids >= 0
        # Completions that answer, sorted by answer, then by weight, largest first (no BLAS: its
        # threads crawl on a busy node; reduceat per answer instead).
        columns = np.lexsort((-log_weights, np.where(answering, self.ids, len(self.right))))[: answering.sum()]
        starts = np.searchsorted(self.ids[columns], np.arange(len(self.right)))
        drawn = draws[:, columns]  # (S, M') bool
        present = np.add.reduceat(drawn, starts, axis=1) > 0  # (S, K) drawn at least once
        totals = _log_totals(drawn, log_weights[columns], starts, present)  # (S, K)
        best = np.where(present, totals, -np.inf).max(axis=1, keepdims=True)  # (S, 1)
        # Bit-level noise only (a few ulps of a log total); -inf (zero weights) ties with -inf.
        tol = np.where(np.isfinite(best), 16 * np.finfo(float).eps * np.maximum(1.0, np.abs(best)), 0.0)
        with np.errstate(invalid="ignore"):
            tie = present & ((totals == best) | (np.abs(totals - best) <= tol))  # all-abstain rows: nothing ties
        n_tie = tie.sum(axis=1)
        return np.where(n_tie > 0, (tie @ self.right) / np.maximum(n_tie, 1), 0.0)


def _log_totals(drawn: np.ndarray, logs: np.ndarray, starts: np.ndarray, present: np.ndarray) -> np.ndarray:
    """log of each answer's summed weight over its drawn completions, (S, K); -inf if none weighs.

    Each answer is shifted by its own largest log weight, so the common case is one product and
    one sum, as plain weights would be. A draw where an answer's drawn weights all lie so far below
    that (about e^-690) that the sum would lose precision is redone shifted by its drawn maximum.
    """
    sizes = np.diff(np.append(starts, len(logs)))
    finite = np.isfinite(logs)  # (M',) -inf: a zero weight
    peak = np.maximum.reduceat(logs, starts)  # (K,)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(finite, np.exp(logs - np.repeat(peak, sizes)), 0.0)  # (M',) in [0, 1]
        sums = np.add.reduceat(drawn * scaled, starts, axis=1)  # (S, K)
        totals = peak + np.log(sums)
    weighed = present if finite.all() else np.add.reduceat(drawn & finite, starts, axis=1) > 0  # (S, K)
    deep = (weighed & (sums < 1e-300)).any(axis=1)  # (S,)
    if deep.any():
        tops = np.maximum.reduceat(np.where(drawn[deep], logs, -np.inf), starts, axis=1)  # (D, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = np.where(drawn[deep] & finite, np.exp(logs - np.repeat(tops, sizes, axis=1)), 0.0)
            totals[deep] = tops + np.log(np.add.reduceat(terms, starts, axis=1))
    return totals


def enumerable(m: int, n: int, max_cells: int = MAX_CELLS) -> bool:
    return math.comb(m, n) * m <= max_cells


@functools.lru_cache(maxsize=16)
def _all_draws(m: int, n: int) -> np.ndarray:
    """Every n-subset of m as a (C(m, n), m) boolean matrix (prompts often share m: cached)."""
    draws = np.zeros((math.comb(m, n), m), dtype=bool)
    for row, subset in enumerate(itertools.combinations(range(m), n)):
        draws[row, list(subset)] = True
    draws.flags.writeable = False
    return draws


def _answer_ids(answers: list, labels: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Answers as ids 0..K-1 (-1: no answer) and each answer's label (mean over its completions)."""
    index: dict = {}
    ids = np.array([-1 if a is None or a == "" else index.setdefault(a, len(index)) for a in answers])
    sums, counts = np.zeros(len(index)), np.zeros(len(index))
    np.add.at(sums, ids[ids >= 0], np.asarray(labels, dtype=float)[ids >= 0])
    np.add.at(counts, ids[ids >= 0], 1)
    return ids, sums / np.maximum(counts, 1)


def log_weights(scores: list[float], mode: str) -> np.ndarray:
    """Each completion's vote weight, as a log (so nothing underflows). exp: the weight is exp(score),
    the Bradley-Terry strength of a logit-scale reward, so its log is the score (shifted by the
    prompt's top score, which changes no winner); score: the raw score, for probabilities (PRMs)."""
    scores = np.asarray(scores, dtype=float)
    if mode == "exp":
        return scores - scores.max()
    if mode == "score":
        if (scores < 0).any():
            raise InputError(f"--vote-weight score needs scores >= 0, found {scores.min():.4g}",
                             "use --vote-weight exp (the default) for logit-scale reward models")
        with np.errstate(divide="ignore"):
            return np.log(scores)  # a zero score: weight 0, log -inf
    raise ConfigError(f"unknown --vote-weight {mode!r}", f"choose one of {', '.join(VOTE_WEIGHTS)}")


def curves(groups: list[Group], ns: list[int], vote_weight: str = "exp", seed: int = 0,
           max_cells: int = MAX_CELLS, samples: int = 2000) -> Curves:
    """Every selector's accuracy at each N, averaged over prompts.

    N is capped at the largest prompt's number of completions; a prompt with fewer completions
    than N draws all it has (its best-of-M), so every point averages over the same prompts.
    """
    if not groups:
        raise InputError("no prompt has a scored, labelled completion")
    if not ns or min(ns) < 1:
        raise ConfigError(f"--n needs positive numbers, got {ns}")
    ns = sorted({min(n, max(len(g.labels) for g in groups)) for n in ns})
    votes = all(g.answers is not None for g in groups)
    names = [s for s in SELECTORS if votes or s not in ("majority_vote", "weighted_vote")]
    out = Curves(ns, {s: [] for s in names}, {s: [] for s in names}, len(groups),
                 sum(len(g.labels) for g in groups), [], [])
    ballots = [(Ballot(g.answers, g.labels), log_weights(g.scores, vote_weight)) for g in groups] if votes else []
    for n in ns:
        sums, variance = dict.fromkeys(names, 0.0), 0.0
        out.capped.append(sum(len(g.labels) < n for g in groups))
        out.sampled.append(0)
        for i, g in enumerate(groups):
            k = min(n, len(g.labels))
            sums["reward_model"] += pick_best(g.scores, g.labels, k)
            sums["random"] += random_pick(g.labels)
            sums["oracle"] += oracle(g.labels, k)
            if votes:
                ballot, weights = ballots[i]
                exact = enumerable(len(g.labels), k, max_cells)  # else the DP: exact too, and fast for large M
                sums["majority_vote"] += (ballot.expect(np.zeros(ballot.m), k, None, max_cells, samples)[0]
                                          if exact else majority_vote(g.answers, g.labels, k))
                mean, var = ballot.expect(weights, k, [seed, i, k], max_cells, samples)
                sums["weighted_vote"] += mean
                variance += var
                out.sampled[-1] += not exact
        for name in names:
            out.accuracy[name].append(sums[name] / len(groups))
            out.stderr[name].append(math.sqrt(variance) / len(groups) if name == "weighted_vote" else 0.0)
    return out
