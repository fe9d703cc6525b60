"""InternLM2 reward, native: the published InternLM2 layout converted into a Llama backbone equals
the card's get_score (double BOS, reward token appended) at any batching, with right padding."""

import json

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from tiny_orm import (
    internlm2_config, internlm2_hidden, internlm2_reference, internlm2_state_dict, messages_of, mixed_rows,
    save_internlm2, score_rows, shuffled,
)
from tiny import build_tokenizer

TOL = 1e-5


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
    return save_internlm2(tmp_path_factory.mktemp("models") / "internlm2-7b-reward")


@pytest.mark.parametrize("heads, kv_heads", [(4, 2), (4, 4), (4, 1)])
def test_conversion_of_the_fused_wqkv_layout(heads, kv_heads):
    """Grouped-query layouts pack [q_1..q_groups, k, v] per key/value head: the converted
    LlamaModel must reproduce the InternLM2 forward written straight from that layout."""
    from transformers import LlamaModel

    from rmscore.models.internlm2 import convert, llama_config

    cfg = internlm2_config(build_tokenizer("llama3"), heads, kv_heads)
    sd = internlm2_state_dict(cfg, seed=heads * 10 + kv_heads)
    config = llama_config(cfg)
    model = LlamaModel(config).eval()
    converted = convert(sd, config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in converted.items() if k.startswith("model.")})
    assert converted["v_head.weight"] is sd["v_head.weight"]
    ids = [5, 17, 99, 3, 250, 42, 7, 7, 120, 64, 11]
    with torch.no_grad():
        ours = model(torch.tensor([ids])).last_hidden_state[0]
    assert (ours - internlm2_hidden(sd, cfg, ids)).abs().max() < 1e-5


def test_equals_get_score_at_any_batching_and_order(internlm2, write_jsonl, tmp_path):
    rows = mixed_rows(seed=4)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(internlm2)
    expected = {(i, j): internlm2_reference(internlm2, messages_of(r, c), tokenizer)
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    mixed = shuffled(rows)
    for budget, data in ((64, rows), (300, mixed), (5000, mixed)):
        summary, out = score_rows(write_jsonl(data, f"in{budget}.jsonl"), internlm2, tmp_path / f"o{budget}", budget)
        assert summary.model_type == "internlm2" and summary.statuses == {"ok": len(expected)}
        worst = max(abs(r["score"] - expected[(data[r["input_index"]].get("orig", r["input_index"]),
                                                 r["completion_index"])]) for r in out)
        assert worst < TOL, f"budget {budget}: {worst}"
    assert summary.batches < len(expected)


def test_double_bos_by_default_single_when_asked(internlm2, write_jsonl, tmp_path):
    rows = mixed_rows(seed=5)[:2]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(internlm2)
    path = write_jsonl(rows)
    _, double = score_rows(path, internlm2, tmp_path / "double", 500)
    _, single = score_rows(path, internlm2, tmp_path / "single", 500, bos="template")
    assert [r["num_tokens"] for r in double] == [r["num_tokens"] + 1 for r in single]
    for r in single:
        row = rows[r["input_index"]]
        ref = internlm2_reference(internlm2, messages_of(row, row["completions"][r["completion_index"]]), tokenizer,
                                  bos="template")
        assert abs(r["score"] - ref) < TOL


def test_a_checkpoint_without_reward_token_is_refused(internlm2, copy_model, write_jsonl, tmp_path):
    from rmscore.errors import ModelError

    broken = copy_model(internlm2)
    config = json.loads((broken / "config.json").read_text())
    del config["reward_token_id"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="reward_token_id"):
        score_rows(write_jsonl(mixed_rows()[:1]), broken, tmp_path / "o", 500)
