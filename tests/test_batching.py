import random

import pytest

from rmscore.batching import chunked, padding_efficiency, plan_batches


def test_every_index_once_and_budget_respected():
    rng = random.Random(0)
    lengths = [int(rng.lognormvariate(5, 0.8)) + 1 for _ in range(2000)]
    batches = plan_batches(lengths, max_tokens=4096, max_batch_size=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widest = max(lengths[i] for i in batch)
        assert len(batch) <= 64
        assert len(batch) * widest <= 4096 or len(batch) == 1


def test_long_row_gets_its_own_batch():
    assert plan_batches([10, 5000, 10], max_tokens=100, max_batch_size=8) == [[1], [0, 2]]


def test_longest_first_and_deterministic():
    lengths = [3, 9, 9, 1, 7]
    batches = plan_batches(lengths, max_tokens=18, max_batch_size=8)
    assert batches == [[1, 2], [4, 0], [3]]
    assert plan_batches(lengths, 18, 8) == batches


def test_max_batch_size_caps_rows():
    batches = plan_batches([5] * 10, max_tokens=10_000, max_batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 3, 1]


def test_sorting_beats_input_order_on_a_long_tail():
    rng = random.Random(1)
    lengths = [int(rng.lognormvariate(6, 0.7)) for _ in range(4000)]
    fixed = [list(range(i, min(i + 16, len(lengths)))) for i in range(0, len(lengths), 16)]
    sorted_eff = padding_efficiency(lengths, plan_batches(lengths, 32768, 512))
    assert padding_efficiency(lengths, fixed) < 0.5
    assert sorted_eff > 0.95


def test_bad_budget_rejected():
    with pytest.raises(ValueError):
        plan_batches([1], 0, 1)


def test_chunked_windows():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


def test_packed_budget_is_on_the_sum():
    from rmscore.batching import plan_packed

    rng = random.Random(2)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = plan_packed(lengths, max_tokens=1024, max_rows=64)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        assert sum(lengths[i] for i in batch) <= 1024 or len(batch) == 1
        assert len(batch) <= 64
    # Next-fit on sorted lengths fills rows close to the budget.
    assert sum(lengths) / (len(batches) * 1024) > 0.85
    assert plan_packed([5000, 10], 100, 8) == [[0], [1]]


def test_units_pack_whole_groups_under_the_budget():
    from rmscore.batching import plan_units

    rng = random.Random(3)
    prefix = [rng.randint(1, 200) for _ in range(60)]
    suffixes = [[rng.randint(1, 80) for _ in range(rng.randint(1, 9))] for _ in prefix]
    batches = plan_units(prefix, suffixes, max_tokens=2048, max_rows=16)
    placed = sorted((g, i) for b in batches for g, members in b for i in members)
    assert placed == [(g, i) for g in range(60) for i in range(len(suffixes[g]))]
    for batch in batches:
        tokens = sum(prefix[g] + sum(suffixes[g][i] for i in members) for g, members in batch)
        assert tokens <= 2048 or len(batch) == 1
        assert sum(len(m) for _, m in batch) <= 16
    # Most groups stay whole, so their prompt is computed once.
    assert sum(len(b) for b in batches) <= 65


def test_a_group_too_big_for_one_batch_is_split():
    from rmscore.batching import plan_units

    batches = plan_units([100], [[50] * 10], max_tokens=400, max_rows=64)
    assert [members for b in batches for _, members in b] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]]
