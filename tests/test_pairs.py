"""Pair selection on hand-built prompt groups with known answers (rmscore.pairs.select: pure, no I/O)."""

import math
import random
from collections import Counter

import pytest

from rmscore.config import PairConfig
from rmscore.errors import ConfigError
from rmscore.pairs.select import Completion, DropReport, normalise, select_pairs


def group(scores, texts=None, statuses=None):
    texts = texts or [f"answer {j}" for j in range(len(scores))]
    statuses = statuses or ["ok"] * len(scores)
    return [Completion((0, j), t, s, st) for j, (s, t, st) in enumerate(zip(scores, texts, statuses))]


def cfg(**kw):
    return PairConfig(["in"], "out.parquet", **kw)


def picked(sel):
    return [(p.chosen.key[1], p.rejected.key[1]) for p in sel.pairs]


def test_max_min_picks_best_and_worst():
    sel = select_pairs("p", group([1.0, 3.0, 2.0]), cfg())
    assert picked(sel) == [(1, 0)]
    assert sel.pairs[0].margin == 2.0 and sel.dropped is None


def test_max_min_ties_at_the_top_or_bottom_resolve_by_position():
    assert picked(select_pairs("p", group([3.0, 1.0, 3.0]), cfg())) == [(0, 1)]
    assert picked(select_pairs("p", group([3.0, 1.0, 2.0, 1.0]), cfg())) == [(0, 1)]
    # Input order of the list does not matter, only the keys.
    assert picked(select_pairs("p", group([3.0, 1.0, 3.0])[::-1], cfg())) == [(0, 1)]


def test_all_equal_scores_give_no_pair():
    sel = select_pairs("p", group([0.5, 0.5, 0.5]), cfg())
    assert sel.pairs == [] and sel.dropped == "ties"
    assert sel.candidates["ties"] == 1 and sel.candidates["considered"] == 1


def test_identical_texts_after_whitespace_normalisation_never_pair():
    texts = ["The answer is 4.", "  The answer\nis   4. ", "It is 5."]
    sel = select_pairs("p", group([1.0, 9.0, 0.0], texts), cfg())
    # The copy at index 1 (score 9) is dropped; the first copy (score 1) stays.
    assert picked(sel) == [(0, 2)] and sel.completions["identical"] == 1
    only_copies = select_pairs("p", group([1.0, 9.0], texts[:2]), cfg())
    assert only_copies.pairs == [] and only_copies.dropped == "identical"
    assert normalise(" a\t b\n") == "a b"


def test_min_margin():
    assert select_pairs("p", group([1.0, 2.0]), cfg(min_margin=1.5)).dropped == "below_margin"
    sel = select_pairs("p", group([1.0, 2.5]), cfg(min_margin=1.5))
    assert picked(sel) == [(1, 0)] and sel.pairs[0].margin >= 1.5


def test_max_length_ratio_drops_pairs_whose_chosen_is_too_long():
    texts = ["x" * 10, "x" * 16, "y" * 15, "z" * 30]  # lengths 10, 16, 15, 30
    scores = [1.0, 4.0, 3.0, 2.0]
    # max-min: best (16 chars) vs worst (10 chars), ratio 1.6.
    assert picked(select_pairs("p", group(scores, texts), cfg(max_length_ratio=1.6))) == [(1, 0)]  # not more than R
    sel = select_pairs("p", group(scores, texts), cfg(max_length_ratio=1.5))
    assert sel.pairs == [] and sel.dropped == "length_ratio" and sel.candidates["length_ratio"] == 1
    # best-vs-rest capped at 1: the largest margin within the ratio (16 vs 30 is shorter; 16 vs 15 is 1.07).
    rest = select_pairs("p", group(scores, texts), cfg(rule="best-vs-rest", pairs_per_prompt=1, max_length_ratio=1.5))
    assert picked(rest) == [(1, 3)] and rest.candidates["length_ratio"] == 1 and rest.candidates["not_selected"] == 1
    # A prompt is dropped for the last filter any candidate reached: a tie and a too-long pair -> length_ratio.
    mixed = select_pairs("p", group([2.0, 2.0, 1.0], ["aa", "bb", "a"]), cfg(rule="best-vs-rest", max_length_ratio=1.5))
    assert mixed.dropped == "length_ratio" and mixed.candidates["ties"] == 1
    below = select_pairs("p", group([2.0, 1.9, 1.0], ["aa", "b", "a"]),
                         cfg(rule="best-vs-rest", min_margin=0.5, max_length_ratio=1.5))
    assert below.dropped == "length_ratio" and below.candidates["below_margin"] == 1
    with pytest.raises(ConfigError, match="max-length-ratio"):
        cfg(max_length_ratio=0.5)


def test_bad_status_and_missing_scores_never_pair():
    scores = [None, 1.0, 2.0, 50.0, None, math.nan]
    statuses = ["too_long", "ok", "truncated", "step_mismatch", "ok", "ok"]
    sel = select_pairs("p", group(scores, statuses=statuses), cfg())
    assert picked(sel) == [(2, 1)]  # truncated rows are scored and usable
    assert sel.completions["bad_status"] == 4
    assert Counter(sel.bad_status) == {"too_long": 1, "step_mismatch": 1, "no_score": 2}
    assert [c.key[1] for c in sel.scored] == [1, 2]
    lone = select_pairs("p", group([None, 1.0], statuses=["invalid_row", "ok"]), cfg())
    assert lone.dropped == "bad_status"


def test_too_few_completions():
    assert select_pairs("p", group([1.0]), cfg()).dropped == "too_few_completions"
    assert select_pairs("p", group([1.0, 2.0]), cfg(min_completions=3)).dropped == "too_few_completions"
    three = group([1.0, 2.0, None], statuses=["ok", "ok", "too_long"])
    assert select_pairs("p", three, cfg(min_completions=3)).dropped == "bad_status"


def test_best_vs_rest_largest_margin_first_and_capped():
    scores = [4.0, 3.0, 2.0, 1.0, 4.0]
    sel = select_pairs("p", group(scores), cfg(rule="best-vs-rest"))
    assert picked(sel) == [(0, 3), (0, 2), (0, 1)]  # index 4 ties with the best: no pair
    assert sel.candidates == {"ties": 1, "below_margin": 0, "disagreement": 0, "length_ratio": 0, "kept": 3, "not_selected": 0,
                              "considered": 4}
    capped = select_pairs("p", group(scores), cfg(rule="best-vs-rest", pairs_per_prompt=2))
    assert picked(capped) == [(0, 3), (0, 2)] and capped.candidates["not_selected"] == 1


def test_all_pairs_every_ordered_pair_by_margin():
    sel = select_pairs("p", group([3.0, 2.0, 1.0, 1.0]), cfg(rule="all-pairs"))
    assert picked(sel) == [(0, 2), (0, 3), (0, 1), (1, 2), (1, 3)]  # (2, 3) is a tie
    assert all(p.margin > 0 for p in sel.pairs) and sel.candidates["considered"] == 6
    assert picked(select_pairs("p", group([3.0, 2.0, 1.0, 1.0]), cfg(rule="all-pairs", pairs_per_prompt=3))) == [
        (0, 2), (0, 3), (0, 1)]
    margin = select_pairs("p", group([3.0, 2.0, 1.0, 1.0]), cfg(rule="all-pairs", min_margin=1.5))
    assert picked(margin) == [(0, 2), (0, 3)] and margin.candidates["below_margin"] == 3


def test_max_random_is_seeded_per_prompt():
    rng = random.Random(0)
    groups = {f"p{i}": group([rng.random() for _ in range(6)]) for i in range(40)}

    def run(seed, order=None, **kw):
        ids = order or list(groups)
        return {pid: picked(select_pairs(pid, groups[pid], cfg(rule="max-random", seed=seed, **kw))) for pid in ids}

    first = run(0)
    assert first == run(0) == run(0, order=list(groups)[::-1])
    assert run(1) != first  # 40 prompts x 5 choices: equal draws for every prompt would be a bug
    for pid, pairs in first.items():
        best = max(range(6), key=lambda j: groups[pid][j].score)
        assert len(pairs) == 1 and pairs[0][0] == best and pairs[0][1] != best
    shuffled = {pid: picked(select_pairs(pid, random.Random(7).sample(g, len(g)), cfg(rule="max-random")))
                for pid, g in groups.items()}
    assert shuffled == first  # the draw depends on the prompt, not on the order rows arrive in
    two = run(0, pairs_per_prompt=2)
    assert all(len(p) == 2 and p[0][1] != p[1][1] for p in two.values())


def test_max_random_draws_only_pairs_that_clear_the_margin():
    sel = select_pairs("p", group([5.0, 5.0, 4.9, 1.0]), cfg(rule="max-random", min_margin=1.0))
    assert picked(sel) == [(0, 3)]
    assert sel.candidates == {"ties": 1, "below_margin": 1, "disagreement": 0, "length_ratio": 0, "kept": 1, "not_selected": 0,
                              "considered": 3}


def test_drop_report_adds_up():
    report = DropReport()
    cases = [group([1.0, 2.0]), group([1.0]), group([1.0, 1.0]), group([1.0, 1.2]),
             group([None, 2.0], statuses=["too_long", "ok"]), group([1.0, 2.0], ["same", " same"])]
    for i, g in enumerate(cases):
        report.add(select_pairs(f"p{i}", g, cfg(min_margin=0.5)))
    report.add_without_prompt(["invalid_row", "ok"])
    out = report.as_dict()
    assert out["prompts"] == {"in": 6, "paired": 1, "dropped": {
        "too_few_completions": 1, "bad_status": 1, "identical": 1, "ties": 1, "below_margin": 1, "disagreement": 0, "length_ratio": 0}}
    comp = out["completions"]
    assert comp["in"] == 13 == comp["distinct"] + comp["bad_status"] + comp["identical"]
    assert comp["bad_status_by_status"] == {"invalid_row": 1, "no_prompt_id": 1, "too_long": 1}
    cand = out["candidate_pairs"]
    assert cand["considered"] == sum(cand[k] for k in ("ties", "below_margin", "disagreement", "length_ratio", "not_selected",
                                                       "kept")) == 3
    assert out["pairs"] == 1


@pytest.mark.parametrize("kw, needle", [
    ({"rule": "best"}, "--rule"), ({"format": "jsonl"}, "--format"), ({"min_margin": -1}, "--min-margin"),
    ({"min_margin": math.inf}, "--min-margin"), ({"min_completions": 1}, "--min-completions"),
    ({"pairs_per_prompt": 0}, "--pairs-per-prompt"), ({"pairs_per_prompt": 3}, "max-min"),
    ({"buckets": 0}, "--buckets"),
])
def test_config_validation(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        cfg(**kw)
