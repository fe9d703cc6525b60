"""The benchmark's scorers score the same numbers (the correctness column), on a tiny preset.

Speed is measured by `python bench/run.py`, never asserted in tests."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from scorers import FUNCTIONS, SCORERS  # noqa: E402
from workload import PRESETS, build_model, build_tokenizer, corpus_words, make_rows, model_flops  # noqa: E402

TINY = PRESETS["tiny"]


def test_every_scorer_gives_the_per_example_numbers():
    words = corpus_words()
    tokenizer = build_tokenizer(words)
    rows = make_rows(TINY, tokenizer, words)
    assert len(rows) == 20 and len({r["prompt_id"] for r in rows}) == 4
    model, config = build_model(TINY, len(tokenizer), tokenizer.pad_token_id)
    with torch.inference_mode():
        reference = FUNCTIONS["per-example"](model, tokenizer, rows, TINY)[0]
        for name in SCORERS[1:]:
            scores = FUNCTIONS[name](model, tokenizer, rows, TINY)[0]
            assert max(abs(a - b) for a, b in zip(scores, reference)) < 1e-4, name
    assert model_flops(config, 100) > 2 * 100 * 2 * (64 * 64 * 2)  # dense part counted, attention on top
