"""Process reward models read a conversation already rendered as text in their own format (with
its step markers) where `rmscore score` reads the same question and steps: encode_rendered per
family, then /pooling `input` text and /get_reward over real HTTP on 127.0.0.1.

The texts are rendered by the cards' reference code (prm_cards.py), never by rmscore."""

import pytest
from prm_cards import (
    qwen_prm_conversation_str, rlhflow_conversation, skywork_prepare_input, step_tag_input_for_prm,
)
from serving import running
from tiny_prm import save_qwen_prm, save_rlhflow, save_skywork_prm, save_step_tag, step_rows, write_rows

from rmscore.config import ColumnMap, ModelConfig
from rmscore.score.engine import samples_from_rows
from rmscore.models import load_model

ROWS = step_rows(5, seed=4)


def qwen_text(tok, row):
    return qwen_prm_conversation_str(tok, row["prompt"], row["steps"])


def step_tag_text(tok, row):
    return step_tag_input_for_prm(row["prompt"], row["steps"])


def rlhflow_text(tok, row):
    return tok.apply_chat_template(rlhflow_conversation(row["prompt"], row["steps"]), tokenize=False)


def skywork_text(tok, row):
    return tok.decode(skywork_prepare_input(row["prompt"], "\n".join(row["steps"]), tok)[0])


# family: (checkpoint, --model-type, the card's rendering, the same text as a policy's decode leaves it)
FAMILIES = {
    "qwen-prm": (save_qwen_prm, None, qwen_text,
                 lambda tok, text: "<pad><pad>" + text.removesuffix("\n") + "<pad>"),  # stops at <|im_end|>
    "step-tag": (save_step_tag, "step-tag", step_tag_text,
                 lambda tok, text: tok.bos_token + text + tok.eos_token),  # decode keeps BOS and EOS
    "rlhflow-prm": (save_rlhflow, "rlhflow-prm", rlhflow_text, lambda tok, text: text + "<pad><pad>"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("prm-text")
    saved = {name: save(root / name) for name, (save, *_) in FAMILIES.items()}
    return {**saved, "skywork-prm": save_skywork_prm(root / "skywork")}


def loaded(checkpoints, family):
    model_type = FAMILIES[family][1] if family in FAMILIES else None
    model, name = load_model(ModelConfig(str(checkpoints[family]), model_type=model_type or "auto"))
    assert name == family
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_rendered_text_is_read_where_score_reads_the_steps(family, checkpoints):
    model = loaded(checkpoints, family)
    _, _, render, as_decoded = FAMILIES[family]
    want = model.encode(samples_from_rows(ROWS, ColumnMap()))
    texts = [render(model.tokenizer, row) for row in ROWS]
    for given in (texts, [as_decoded(model.tokenizer, text) for text in texts]):
        got = model.encode_rendered(given)
        assert [(e.ids, e.positions, e.expected_positions) for e in got] == \
               [(e.ids, e.positions, e.expected_positions) for e in want]
    assert [len(e.positions) for e in want] == [len(row["steps"]) for row in ROWS]


BAD = {  # family: [(text, what its status_detail says)]
    "qwen-prm": [
        ("<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n1+1=2\n\nIt is 2.<|im_end|>\n",
         "no step tag '<extra_0>'"),
        ("<|im_start|>user\nWhy<extra_0>?<|im_end|>\n<|im_start|>assistant\nBecause.<extra_0><|im_end|>\n",
         "stands before the assistant reply"),
        ("<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\nBecause.<extra_0>So 2.<|im_end|>\n",
         "text after the last step tag"),
        ("Because.<extra_0>", "no assistant reply"),
    ],
    "step-tag": [
        ("What is 1+1? 1+1=2\nThe answer is 2", "no step tag 'ки'"),
        ("What ки is 1+1? 1+1=2 ки\nThe answer is 2 ки", "line 1 of 2 holds the step tag 'ки' before its end"),
        ("What is 1+1? 1+1=2 ки\nThe answer is 2", "text after the last step tag"),
    ],
    "rlhflow-prm": [
        ("What is 1+1? 1+1=2", "no assistant reply"),
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ 1+1=2<|eot_id|><|start_header_id|>"
         "assistant<|end_header_id|>\n\n-<|eot_id|>", "assistant reply 1 of 1 is not '+'"),
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ 1+1=2<|eot_id|><|start_header_id|>"
         "assistant<|end_header_id|>\n\n+<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSo 2<|eot_id|>",
         "text after the last '+' reply"),
    ],
    "skywork-prm": [("<s>What is 1+1?\n1+1=2\nThe answer is 2\n", "cannot read a rendered text")],
}


@pytest.mark.parametrize("family", BAD)
def test_text_not_in_the_family_format_is_an_invalid_row_that_says_why(family, checkpoints):
    model = loaded(checkpoints, family)
    texts = [text for text, _ in BAD[family]]
    got = model.encode_rendered(texts)
    assert [(e.status, needle in e.detail) for e, (_, needle) in zip(got, BAD[family])] == \
           [("invalid_row", True)] * len(texts), [e.detail for e in got]
    if family in FAMILIES:  # one bad text among good ones spoils nothing
        good = FAMILIES[family][2](model.tokenizer, ROWS[0])
        mixed = model.encode_rendered([good, texts[0], good])
        assert mixed[0].ids == mixed[2].ids == model.encode(samples_from_rows(ROWS[:1], ColumnMap()))[0].ids
        assert mixed[1].status == "invalid_row"


@pytest.mark.parametrize("family", FAMILIES)
def test_pooling_input_and_get_reward_give_rmscore_score_numbers(family, checkpoints, tmp_path):
    from tiny_orm import score_rows

    _, model_type, render, as_decoded = FAMILIES[family]
    model = {"model_type": model_type} if model_type else {}
    _, want = score_rows(write_rows(tmp_path / "in.jsonl", ROWS), checkpoints[family], tmp_path / "out", **model)
    assert [r["status"] for r in want] == ["ok"] * len(ROWS)
    with running(checkpoints[family], model=model, max_wait_ms=2) as client:
        tok = client.server.service.engine.model.tokenizer
        texts = [render(tok, row) for row in ROWS]
        status, _, pooled = client.post("/pooling", {"input": texts, "task": "token_classify"})
        assert status == 200, pooled
        for data, ref in zip(pooled["data"], want):
            assert len(data["data"]) == len(ref["step_scores"])
            assert max(abs(good - p) for (_, good), p in zip(data["data"], ref["step_scores"])) < 1e-5
        assert pooled["usage"]["prompt_tokens"] == sum(r["num_tokens"] for r in want)
        queries = [as_decoded(tok, text) for text in texts] + ["no step markers here"]
        # one prompt for all, as OpenRLHF sends a prompt's samples: the rows share a prompt_id
        status, _, body = client.post("/get_reward", {"query": queries, "prompts": ["p"] * len(queries)})
        assert status == 200 and body["status"] == ["ok"] * len(ROWS) + ["invalid_row"]
        assert max(abs(a - r["score"]) for a, r in zip(body["rewards"], want)) < 1e-5
        assert body["rewards"][-1] is None and body["status_detail"][-1].startswith(("no step tag", "no assistant"))
        status, _, error = client.post("/pooling", {"input": "no step markers here", "task": "token_classify"})
    assert status == 400 and "input 0 cannot be scored: invalid_row: no " in error["error"]["message"]


def test_skywork_text_is_an_invalid_row_over_http(checkpoints):
    with running(checkpoints["skywork-prm"], max_wait_ms=2) as client:
        tok = client.server.service.engine.model.tokenizer
        status, _, body = client.post("/get_reward", {"query": [skywork_text(tok, ROWS[0])]})
        assert status == 200 and body["status"] == ["invalid_row"] and body["rewards"] == [None]
        assert "send the question and steps" in body["status_detail"][0]
        messages = [{"role": "user", "content": ROWS[0]["prompt"]},
                    {"role": "assistant", "content": "\n".join(ROWS[0]["steps"])}]
        status, _, pooled = client.post("/pooling", {"messages": messages})
    assert status == 200 and len(pooled["data"][0]["data"]) == len(ROWS[0]["steps"])  # messages still work
