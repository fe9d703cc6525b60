"""Nemotron-70B-Reward style: the logit of vocabulary id 0 at the last position, as the card's
generate(max_new_tokens=1, output_scores=True) gives it, without materialising T x V logits."""

import pytest
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from tiny_orm import messages_of, mixed_rows, nemotron_reference, save_causal_lm, score_rows, shuffled

TOL = 1e-5


@pytest.fixture(scope="module")
def nemotron(tmp_path_factory):
    # Named like the real checkpoint: a plain LlamaForCausalLM is recognised by its name only.
    return save_causal_lm(tmp_path_factory.mktemp("models") / "Llama-3.1-Nemotron-70B-Reward-HF")


def test_equals_card_generate_scores_at_any_batching_and_order(nemotron, write_jsonl, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(nemotron).eval()
    tokenizer = AutoTokenizer.from_pretrained(nemotron)
    rows = mixed_rows(seed=7)
    expected = {(i, j): nemotron_reference(model, tokenizer, messages_of(r, c))
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    mixed = shuffled(rows)
    for budget, data in ((64, rows), (300, mixed), (5000, mixed)):
        summary, out = score_rows(write_jsonl(data, f"in{budget}.jsonl"), nemotron, tmp_path / f"o{budget}", budget)
        assert summary.model_type == "nemotron" and summary.statuses == {"ok": len(expected)}
        worst = max(abs(r["score"] - expected[(data[r["input_index"]].get("orig", r["input_index"]),
                                                 r["completion_index"])]) for r in out)
        assert worst < TOL, f"budget {budget}: {worst}"
    assert summary.batches < len(expected)


def test_only_one_lm_head_row_is_kept(nemotron):
    from rmscore.config import ModelConfig
    from rmscore.models import load_model

    model, family = load_model(ModelConfig(str(nemotron)))
    vocab = len(model.tokenizer)
    assert family == "nemotron" and model.row.shape == (model.backbone.config.hidden_size,)
    assert not any(isinstance(m, nn.Linear) and m.out_features == vocab for m in model.backbone.modules())
    assert model.max_length == 2048  # the tiny config's limit; the real one is capped at the card's 4096
