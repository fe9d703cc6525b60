"""rmscore.inspect.stats on hand-built arrays, against numbers worked out by hand."""

import math

import numpy as np
import pytest

from rmscore.inspect import stats


def test_summary_matches_hand_worked_numbers():
    s = stats.summary(np.array([4.0, 1.0, 3.0, 2.0]))
    # mean 2.5; population std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 4); linear quantiles at (n-1)q.
    assert s["count"] == 4 and s["mean"] == 2.5 and s["std"] == pytest.approx(math.sqrt(1.25))
    assert (s["min"], s["p25"], s["p50"], s["p75"], s["max"]) == pytest.approx((1.0, 1.75, 2.5, 3.25, 4.0))
    assert (s["p5"], s["p95"]) == pytest.approx((1.15, 3.85))
    assert stats.summary(np.zeros(0)) == {"count": 0}


def test_ranks_average_ties():
    assert stats.ranks(np.array([10, 20, 20, 30, 20])).tolist() == [1, 3, 3, 5, 3]
    assert stats.ranks(np.array([3.0, 1.0, 2.0])).tolist() == [3, 1, 2]
    got = stats.group_ranks(np.array([5, 1, 5, 9, 9, 2]), np.array([0, 0, 0, 1, 1, 1]))
    assert got.tolist() == [2.5, 1, 2.5, 2.5, 2.5, 1]


def test_spearman_with_ties_by_hand():
    # x ranks 1..5; y = [5, 6, 7, 8, 7] ranks [1, 2, 3.5, 5, 3.5]. Deviations from the mean rank 3:
    # dx = [-2, -1, 0, 1, 2], dy = [-2, -1, 0.5, 2, 0.5]: sum dx dy = 8, sum dx^2 = 10, sum dy^2 = 9.5.
    rho = stats.spearman(np.arange(1, 6), np.array([5, 6, 7, 8, 7]))
    assert rho == pytest.approx(8 / math.sqrt(10 * 9.5))
    assert stats.spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1.0)  # monotone: 1
    assert stats.spearman(np.arange(10), -np.exp(np.arange(10))) == pytest.approx(-1.0)
    assert stats.spearman(np.arange(3), np.ones(3)) is None  # a constant has no rank correlation
    assert stats.spearman(np.array([1.0]), np.array([2.0])) is None


def test_within_groups_averages_groups_that_have_a_correlation():
    x = np.array([1, 2, 3, 1, 2, 3, 1, 2, 7])
    y = np.array([1, 2, 3, 3, 2, 1, 5, 5, 0])
    g = np.array(["a", "a", "a", "b", "b", "b", "c", "c", "d"])
    # a: +1, b: -1, c: y constant (skipped), d: one row (skipped).
    assert stats.within_groups(x, y, g) == {"mean": 0.0, "groups": 2, "skipped": 2, "positive": 0.5}
    # Group codes need not be sorted or contiguous, nor rows grouped together.
    order = np.array([4, 0, 8, 2, 6, 1, 5, 3, 7])
    assert stats.within_groups(x[order], y[order], g[order]) == stats.within_groups(x, y, g)


def test_length_ratios_by_hand():
    chosen, rejected = np.array([20, 10, 30, 10]), np.array([10, 10, 10, 40])
    r = stats.length_ratios(chosen, rejected)  # ratios 2, 1, 3, 0.25
    assert (r["pairs"], r["chosen_longer"], r["same_length"], r["chosen_shorter"]) == (4, 0.5, 0.25, 0.25)
    assert r["ratio"]["p50"] == pytest.approx(1.5) and r["ratio"]["over_1.5"] == 0.5 and r["ratio"]["over_2"] == 0.25
    assert sum(r["histogram"]["counts"]) == 4 and r["histogram"]["edges"][0] == pytest.approx(-2.0)  # log2(0.25)


def test_histogram_counts_every_value():
    h = stats.histogram(np.array([0.0, 0.5, 1.0, 1.0, np.nan]), bins=2)
    assert h["edges"] == [0.0, 0.5, 1.0] and h["counts"] == [1, 3]  # numpy's last bin is closed
    assert stats.integer_histogram(np.array([3, 1, 3, 3])) == {"1": 1, "3": 3}
