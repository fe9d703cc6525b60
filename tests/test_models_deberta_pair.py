"""Encoder reward models on (question, answer) pairs equal the OpenAssistant card's snippet."""

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tiny_orm import mixed_rows, pair_reference, save_pair_encoder, score_rows, shuffled

TOL = 1e-5


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {arch: save_pair_encoder(root / arch, arch) for arch in ("deberta-v2", "bert", "roberta")}


def last_user_turn(prompt):
    return prompt if isinstance(prompt, str) else [m["content"] for m in prompt if m["role"] == "user"][-1]


@pytest.mark.parametrize("arch", ["deberta-v2", "bert", "roberta"])
def test_equals_card_snippet_at_any_batching_and_order(encoders, arch, write_jsonl, tmp_path):
    model_dir = encoders[arch]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = mixed_rows(seed=6)
    expected = {(i, j): pair_reference(model, tokenizer, last_user_turn(r["prompt"]), c)
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    mixed = shuffled(rows)
    for budget, data in ((64, rows), (5000, mixed)):
        summary, out = score_rows(write_jsonl(data, f"in{budget}.jsonl"), model_dir, tmp_path / f"o{budget}", budget)
        assert summary.model_type == "deberta-pair" and summary.statuses == {"ok": len(expected)}
        worst = max(abs(r["score"] - expected[(data[r["input_index"]].get("orig", r["input_index"]),
                                                 r["completion_index"])]) for r in out)
        assert worst < TOL, f"{arch} budget {budget}: {worst}"
    assert summary.batches < len(expected)


def test_text_pair_layout_and_token_types(encoders):
    from rmscore.config import ModelConfig
    from rmscore.models import load_model
    from rmscore.score.records import Sample

    model, _ = load_model(ModelConfig(str(encoders["bert"])))
    prompt = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
              {"role": "user", "content": "what is two"}]
    enc = model.encode([Sample(0, 0, None, prompt, False, "two")])[0]
    tok = model.tokenizer
    assert enc.ids == tok("what is two", "two")["input_ids"] and enc.positions == [0]
    assert enc.ids[0] == tok.cls_token_id and enc.ids.count(tok.sep_token_id) == 2
    assert enc.token_type_ids[-1] == 1 and enc.token_type_ids[0] == 0


def test_longer_than_512_is_skipped_not_cut(encoders, write_jsonl, tmp_path):
    rows = [{"prompt": "short", "completion": "fine"}, {"prompt": "q", "completion": "word " * 600}]
    _, out = score_rows(write_jsonl(rows), encoders["deberta-v2"], tmp_path / "o", 5000)
    assert [r["status"] for r in out] == ["ok", "too_long"] and "512" in out[1]["status_detail"]


def test_empty_answer_is_the_cards_single_text(encoders, write_jsonl, tmp_path):
    """The card's tokenizer(q, "") has no second text: [CLS] q [SEP], not [CLS] q [SEP] [SEP];
    batched beside non-empty answers, each row is still the card's own call."""
    model_dir = encoders["deberta-v2"]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answers = ["", "two", "", "it is two"]
    _, out = score_rows(write_jsonl([{"prompt": "what is two", "completions": answers}]), model_dir, tmp_path / "o", 5000)
    assert [r["status"] for r in out] == ["ok"] * 4
    for row, answer in zip(out, answers):
        assert abs(row["score"] - pair_reference(model, tokenizer, "what is two", answer)) < TOL


def test_system_prompt_is_refused_not_dropped(encoders, write_jsonl, tmp_path):
    from typer.testing import CliRunner

    from rmscore.cli import app

    path = write_jsonl([{"prompt": "q", "completion": "a"}])
    result = CliRunner().invoke(app, ["score", str(path), "-m", str(encoders["bert"]), "-o", str(tmp_path / "o"),
                                      "--system-prompt", "Be terse."])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "deberta-pair takes no system prompt" in result.output and "drop --system-prompt" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.parquet"))
