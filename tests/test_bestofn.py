"""Best-of-N expectations against brute-force enumeration of every N-subset, and hand examples."""

import itertools
import math
import random

import pytest

from rmscore.evaluate import bestofn
from rmscore.evaluate.bestofn import Group
from rmscore.errors import InputError


def answer_labels(answers, labels):
    seen = {}
    for a, label in zip(answers, labels):
        if a not in (None, ""):
            seen.setdefault(a, []).append(label)
    return {a: sum(v) / len(v) for a, v in seen.items()}


def brute(values_of_subset, m, n):
    """Mean over all C(m, n) subsets, in exact fractions-free plain Python."""
    subsets = list(itertools.combinations(range(m), n))
    return sum(values_of_subset(s) for s in subsets) / len(subsets)


def brute_pick(scores, labels, n):
    def value(subset):
        top = max(scores[i] for i in subset)
        tied = [labels[i] for i in subset if scores[i] == top]
        return sum(tied) / len(tied)
    return brute(value, len(scores), n)


def brute_vote(answers, labels, weights, n):
    right = answer_labels(answers, labels)

    def value(subset):
        totals = {}
        for i in subset:
            if answers[i] not in (None, ""):
                totals[answers[i]] = totals.get(answers[i], 0) + weights[i]
        if not totals:
            return 0.0
        best = max(totals.values())
        tied = [a for a, t in totals.items() if math.isclose(t, best, rel_tol=1e-12)]
        return sum(right[a] for a in tied) / len(tied)
    return brute(value, len(answers), n)


def test_pick_best_by_hand():
    # N=2 draws: {3,1}:1 {3,2a}:1 {3,2b}:1 {1,2a}:0 {1,2b}:1 {2a,2b}: tie -> 0.5; total 4.5 / 6
    scores, labels = [3, 1, 2, 2], [1, 0, 0, 1]
    assert bestofn.pick_best(scores, labels, 2) == pytest.approx(0.75, abs=1e-15)
    assert bestofn.pick_best(scores, labels, 1) == pytest.approx(0.5)  # N=1 is a random pick
    assert bestofn.pick_best(scores, labels, 4) == pytest.approx(1.0)
    assert bestofn.pick_best([1, 1, 1], [1, 0, 0], 3) == pytest.approx(1 / 3)  # all tied: fair share


def test_oracle_and_random_by_hand():
    labels = [1, 0, 0, 0]
    assert bestofn.oracle(labels, 1) == pytest.approx(0.25)
    assert bestofn.oracle(labels, 2) == pytest.approx(0.5)  # 3 of 6 pairs hold the right one
    assert bestofn.oracle(labels, 4) == 1.0
    assert bestofn.oracle([0, 0], 2) == 0.0 and bestofn.oracle([1, 1], 1) == 1.0
    assert bestofn.random_pick(labels) == 0.25


@pytest.mark.parametrize("seed", range(40))
def test_closed_forms_equal_enumeration(seed):
    rng = random.Random(seed)
    m = rng.randint(1, 8)
    scores = [rng.choice([0.0, 0.5, 1.0, 2.0, -1.0]) for _ in range(m)]  # many ties
    labels = [float(rng.random() < 0.4) for _ in range(m)]
    if seed % 10 == 0:
        labels = [1.0] * m  # all right
    if seed % 10 == 1:
        labels = [0.0] * m  # all wrong
    answers = [rng.choice(["7", "8", "9", None]) for _ in range(m)]
    weights = [math.exp(s - max(scores)) for s in scores]
    for n in range(1, m + 1):
        assert bestofn.pick_best(scores, labels, n) == pytest.approx(brute_pick(scores, labels, n), abs=1e-12)
        any_right = brute(lambda s: float(any(labels[i] for i in s)), m, n)
        assert bestofn.oracle(labels, n) == pytest.approx(any_right, abs=1e-12)
        ones = [1.0] * m
        assert bestofn.majority_vote(answers, labels, n) == pytest.approx(
            brute_vote(answers, labels, ones, n), abs=1e-12)
        got, var = bestofn.weighted_vote(answers, labels, bestofn.log_weights(scores, "exp"), n, 0, 10_000, 100)
        assert var == 0.0 and got == pytest.approx(brute_vote(answers, labels, weights, n), abs=1e-12)


def test_majority_vote_by_hand():
    # Answers 5,5,6,None; only 6 is right. N=2: {5,5}:0 {5,6}x2: tie -> 0.5 each {5,-}x2: 0 {6,-}: 1
    answers, labels = ["5", "5", "6", None], [0, 0, 1, 0]
    assert bestofn.majority_vote(answers, labels, 2) == pytest.approx((0.5 + 0.5 + 1) / 6)
    # N=3: {5,5,6}:0 {5,5,-}:0 {5,6,-}x2: 0.5 each -> 1/4
    assert bestofn.majority_vote(answers, labels, 3) == pytest.approx(0.25)
    assert bestofn.majority_vote([None, ""], [0, 0], 1) == 0.0  # nobody answers: wrong


def test_weighted_vote_by_hand():
    # Two wrong "5"s against one right "6" with a much higher score: exp weights let "6" win.
    answers, labels, scores = ["5", "5", "6"], [0, 0, 1], [0.0, 0.0, 3.0]
    exact, _ = bestofn.weighted_vote(answers, labels, bestofn.log_weights(scores, "exp"), 3, 0, 10, 10)
    assert exact == 1.0
    assert bestofn.majority_vote(answers, labels, 3) == 0.0
    raw, _ = bestofn.weighted_vote(answers, labels, bestofn.log_weights([0.2, 0.2, 0.3], "score"), 3, 0, 10, 10)
    assert raw == 0.0  # 0.4 > 0.3 with raw probability weights
    with pytest.raises(InputError, match="vote-weight exp"):
        bestofn.log_weights([-1.0, 2.0], "score")


def test_large_prompt_majority_is_exact_and_weighted_is_sampled():
    rng = random.Random(3)
    m = 60
    answers = [rng.choice("abcdef") for _ in range(m)]
    labels = [float(a == "a") for a in answers]
    scores = [rng.gauss(0, 1) for _ in range(m)]
    # The majority DP at n = M equals the plain count; at n = 1 it is the mean label of answerers.
    counts = {a: answers.count(a) for a in set(answers)}
    top = max(counts.values())
    winners = [a for a in counts if counts[a] == top]
    assert bestofn.majority_vote(answers, labels, m) == pytest.approx(sum(a == "a" for a in winners) / len(winners))
    assert bestofn.majority_vote(answers, labels, 1) == pytest.approx(sum(labels) / m)
    weights = bestofn.log_weights(scores, "exp")
    est, var = bestofn.weighted_vote(answers, labels, weights, 1, 0, 10, 4000)
    assert var > 0 and abs(est - sum(labels) / m) < 4 * math.sqrt(var)  # N=1: any vote is a random pick
    again, _ = bestofn.weighted_vote(answers, labels, weights, 1, 0, 10, 4000)
    assert again == est  # seeded


def test_curves_cap_n_and_keep_every_prompt():
    groups = [
        Group([0.1, 0.9, 0.5, 0.3], [0, 1, 0, 0], ["1", "2", "1", "3"]),
        Group([2.0, 1.0], [1, 1], ["4", "4"]),  # all right, fewer completions than N=4
        Group([0.0, 0.0, 0.0], [0, 0, 0], ["9", "8", "7"]),  # all wrong, all tied
    ]
    c = bestofn.curves(groups, [1, 2, 4, 64])
    assert c.ns == [1, 2, 4]  # 64 capped to the largest prompt (4)
    assert c.capped == [0, 0, 2]
    assert c.accuracy["random"] == pytest.approx([(0.25 + 1 + 0) / 3] * 3)
    assert c.accuracy["reward_model"][2] == pytest.approx((1 + 1 + 0) / 3)
    assert c.accuracy["oracle"] == pytest.approx([(0.25 + 1) / 3, (0.5 + 1) / 3, (1 + 1) / 3])
    assert set(c.accuracy) == set(bestofn.SELECTORS) and c.stderr["weighted_vote"] == [0.0] * 3
    no_answers = bestofn.curves([Group(g.scores, g.labels) for g in groups], [2])
    assert set(no_answers.accuracy) == {"reward_model", "random", "oracle"}


def test_sampled_weighted_vote_agrees_with_exact_and_dp_with_enumeration():
    rng = random.Random(5)
    groups = []
    for _ in range(6):
        m = rng.randint(6, 10)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(m)]
        groups.append(Group([rng.gauss(0, 1) for _ in range(m)], [float(a == "1") for a in answers], answers))
    exact = bestofn.curves(groups, [2, 3, 5])
    sampled = bestofn.curves(groups, [2, 3, 5], max_cells=1, samples=4000)  # nothing enumerable
    assert exact.sampled == [0, 0, 0] and sampled.sampled == [6, 6, 6]
    assert sampled.accuracy["majority_vote"] == pytest.approx(exact.accuracy["majority_vote"], abs=1e-12)  # DP
    for got, want, se in zip(sampled.accuracy["weighted_vote"], exact.accuracy["weighted_vote"],
                             sampled.stderr["weighted_vote"]):
        assert 0 < se < 0.01 and abs(got - want) < 4 * se


def test_weighted_vote_compares_log_totals_exactly():
    """exp weights summed plainly round exp(-30) away next to exp(0), and underflow to 0 next to
    exp(800): both votes reported ties. Per-answer logsumexp keeps the strict order."""
    # A = exp(0) + exp(-30) > B = exp(0): A (right) wins the only N=3 draw.
    got, _ = bestofn.weighted_vote(["A", "A", "B"], [1, 1, 0], bestofn.log_weights([0, -30, 0], "exp"), 3)
    assert got == 1.0
    # N=2 draws of X Y Z Z (scores 800, 0, -1, -1), only Y right: X wins its 3 draws, Y beats one
    # Z (exp(0) > exp(-1)) in 2, Z wins {Z, Z}: exactly 2/6.
    got, _ = bestofn.weighted_vote(["X", "Y", "Z", "Z"], [0, 1, 0, 0], bestofn.log_weights([800, 0, -1, -1], "exp"), 2)
    assert got == 1 / 3
    curve = bestofn.curves([Group([0, -30, 0], [1, 1, 0], ["A", "A", "B"])], [3])
    assert curve.accuracy["weighted_vote"] == [1.0]
    # The same scores under two answers, listed in another order, are still an exact tie.
    got, _ = bestofn.weighted_vote(["A", "B", "A", "B", "A", "B"], [1, 0, 1, 0, 1, 0],
                                   bestofn.log_weights([0.1, 0.7, 0.7, 0.2, 0.2, 0.1], "exp"), 6)
    assert got == 0.5
