import random

import pytest

from rmscore.score.batching import chunked, padding_efficiency, plan_batches


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
    from rmscore.score.batching import plan_packed

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


def test_stages_hold_whole_groups_within_the_prompt_budget():
    from rmscore.score.batching import plan_stages

    rng = random.Random(3)
    prefix = [rng.choice([0, rng.randint(1, 900)]) for _ in range(60)]
    stages = plan_stages(prefix, 1000)
    assert sorted(g for s in stages for g in s) == list(range(60))  # every group in exactly one stage
    for stage in stages:
        assert sum(prefix[g] for g in stage) <= 1000 or len(stage) == 1
    assert plan_stages([5000, 10], 100) == [[0], [1]]  # a prompt over the budget still gets a stage


def test_suffix_batches_count_gathered_prompt_keys():
    from rmscore.score.batching import plan_suffixes

    rng = random.Random(4)
    prefix = [rng.randint(0, 300) for _ in range(200)]
    suffix = [rng.randint(1, 400) for _ in range(200)]
    batches = plan_suffixes(prefix, suffix, 2048, 16)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        width = max(prefix[i] for i in batch) + max(suffix[i] for i in batch)
        assert len(batch) * width <= 2048 or len(batch) == 1
        assert len(batch) <= 16
    # Longest completions first: the first batch holds the longest one.
    assert max(suffix) in [suffix[i] for i in batches[0]]
    assert plan_suffixes([100, 0], [5000, 3], 512, 8) == [[0], [1]]


