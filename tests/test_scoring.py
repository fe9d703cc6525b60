"""rmscore's scores equal the model card's reference recipe at batch size 1, whatever the batching."""

import random

import pyarrow.dataset as ds
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from rmscore.score.run import run_score
from tiny import completions_rows

TOL = 1e-5


def score(input_path, model_dir, out_dir, budget=None, **model_kw):
    batch_kw = {k: model_kw.pop(k) for k in ("max_length", "on_overflow", "max_batch_size", "window", "forward") if k in model_kw}
    cfg = ScoreConfig(
        input=InputConfig(str(input_path)),
        output=OutputConfig(str(out_dir), overwrite=True),
        model=ModelConfig(str(model_dir), **model_kw),
        batch=BatchConfig(max_tokens_per_batch=budget, **batch_kw),
    )
    summary = run_score(cfg, log=lambda *_: None)
    rows = ds.dataset(str(out_dir)).to_table().to_pylist()
    return summary, rows


def reference(model_dir, prompt, completion, bos="template", last_token=False):
    """The card recipe, batch size 1: Skywork v0.2 / ArmoRM use apply_chat_template(tokenize=True);
    GRM renders with tokenize=False and calls tokenizer(text), adding a second BOS."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    if bos == "template":
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=False)
    else:
        ids = tok(tok.apply_chat_template(conv, tokenize=False))["input_ids"]
    with torch.no_grad():
        if last_token:  # the true last token, read by hand (what the model was trained on)
            hidden = model.model(torch.tensor([ids])).last_hidden_state[0, -1]
            return model.score(hidden).item(), ids
        return model(torch.tensor([ids])).logits[0, 0].item(), ids


def reference_scores(model_dir, rows, **kw):
    return {(i, j): reference(model_dir, r["prompt"], c, **kw)[0]
            for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_batched_equals_batch_size_one(tiny_models, write_jsonl, tmp_path, arch):
    rows = completions_rows(n_prompts=5, n_completions=4, seed=1)
    expected = reference_scores(tiny_models[arch], rows)
    path = write_jsonl(rows)
    for budget in (64, 300, 5000):
        summary, out = score(path, tiny_models[arch], tmp_path / f"out{budget}", budget)
        got = {(r["input_index"], r["completion_index"]): r["score"] for r in out}
        assert got.keys() == expected.keys()
        worst = max(abs(got[k] - expected[k]) for k in expected)
        assert worst < TOL, f"{arch} budget {budget}: max diff {worst}"
        assert summary.statuses == {"ok": 20}
    assert summary.batches < 20  # the big budget really batched rows together


def test_order_of_input_does_not_change_scores(tiny_models, write_jsonl, tmp_path):
    rows = completions_rows(n_prompts=6, n_completions=3, seed=2)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    _, a = score(write_jsonl(rows, "a.jsonl"), tiny_models["llama"], tmp_path / "a", 200)
    _, b = score(write_jsonl(shuffled, "b.jsonl"), tiny_models["llama"], tmp_path / "b", 1000)
    by_text = {(r["prompt"][0]["content"], r["completion"]): r["score"] for r in a}
    assert [r["input_index"] for r in b] == sorted(r["input_index"] for r in b)  # output in input order
    for r in b:
        assert abs(by_text[(r["prompt"][0]["content"], r["completion"])] - r["score"]) < TOL


def test_pad_equals_eos_trap(tiny_models, write_jsonl, tmp_path):
    """config.pad_token_id == <|eot_id|>, which ends every rendered conversation. transformers'
    own head then skips the final eot and reads one token early; rmscore reads the true last token."""
    model_dir = tiny_models["llama-pad-eos"]
    rows = completions_rows(n_prompts=3, n_completions=3, seed=3)
    truth = reference_scores(model_dir, rows, last_token=True)
    stock = reference_scores(model_dir, rows)
    assert max(abs(truth[k] - stock[k]) for k in truth) > 1e-3  # the trap is real
    _, out = score(write_jsonl(rows), model_dir, tmp_path / "out", 256)
    worst = max(abs(r["score"] - truth[(r["input_index"], r["completion_index"])]) for r in out)
    assert worst < TOL


def test_double_bos_reproduced_only_when_asked(tiny_models, write_jsonl, tmp_path):
    rows = completions_rows(n_prompts=2, n_completions=2, seed=4)
    single = reference_scores(tiny_models["llama"], rows)
    double = reference_scores(tiny_models["llama"], rows, bos="double")
    _, ids = reference(tiny_models["llama"], "hi", "there", bos="double")
    assert ids[0] == ids[1]  # the GRM card's code really does produce two BOS tokens
    path = write_jsonl(rows)
    _, out_single = score(path, tiny_models["llama"], tmp_path / "single", 300)
    _, out_double = score(path, tiny_models["llama"], tmp_path / "double", 300, bos="double")
    for out, ref in ((out_single, single), (out_double, double)):
        assert max(abs(r["score"] - ref[(r["input_index"], r["completion_index"])]) for r in out) < TOL
    assert [r["num_tokens"] + 0 for r in out_double] == [r["num_tokens"] + 1 for r in out_single]


def test_overflow_policies(tiny_models, write_jsonl, tmp_path):
    rows = [{"prompt": "short", "completion": "x " * 5}, {"prompt": "long " * 40, "completion": "y " * 60}]
    path = write_jsonl(rows)
    _, skipped = score(path, tiny_models["llama"], tmp_path / "skip", max_length=64)
    assert [r["status"] for r in skipped] == ["ok", "too_long"]
    assert skipped[1]["score"] is None and "64" in skipped[1]["status_detail"]
    _, cut = score(path, tiny_models["llama"], tmp_path / "cut", max_length=64, on_overflow="truncate-left")
    assert cut[1]["status"] == "truncated" and cut[1]["num_tokens"] == 64
    assert "dropped the first" in cut[1]["status_detail"]
    assert cut[1]["score"] is not None
    from rmscore.errors import InputError

    with pytest.raises(InputError, match="max-length"):
        score(path, tiny_models["llama"], tmp_path / "err", max_length=64, on_overflow="error")


def test_truncate_left_keeps_the_end(tiny_models, write_jsonl, tmp_path):
    """A truncated row scores exactly like a forward over its last max_length tokens."""
    rows = [{"prompt": "long " * 40, "completion": "y " * 30}]
    _, out = score(write_jsonl(rows), tiny_models["llama"], tmp_path / "cut", max_length=48,
                   on_overflow="truncate-left")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["llama"]).eval()
    _, ids = reference(tiny_models["llama"], rows[0]["prompt"], rows[0]["completion"])
    with torch.no_grad():
        hidden = model.model(torch.tensor([ids[-48:]])).last_hidden_state[0, -1]
        expected = model.score(hidden).item()
    assert abs(out[0]["score"] - expected) < TOL


def test_multi_label_head_writes_a_vector(tiny_models, write_jsonl, tmp_path):
    rows = completions_rows(n_prompts=2, n_completions=2, seed=5)
    _, out = score(write_jsonl(rows), tiny_models["llama-3labels"], tmp_path / "out", 300)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["llama-3labels"]).eval()
    _, ids = reference(tiny_models["llama-3labels"], rows[0]["prompt"], rows[0]["completions"][0])
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].tolist()
    assert len(out[0]["scores"]) == 3
    assert max(abs(a - b) for a, b in zip(out[0]["scores"], expected)) < TOL
    assert out[0]["score"] == out[0]["scores"][0]


def test_output_schema_and_metadata(tiny_models, write_jsonl, tmp_path):
    from datasets import load_dataset

    from rmscore.store.output import read_metadata

    rows = completions_rows(n_prompts=2, n_completions=2, seed=6)
    _, out = score(write_jsonl(rows), tiny_models["qwen2"], tmp_path / "out", 300)
    for column in ("prompt_id", "completion_index", "prompt", "completion", "score", "num_tokens", "status"):
        assert column in out[0]
    meta = read_metadata(tmp_path / "out")
    assert meta["model_type"] == "seq-cls" and meta["dtype"] == "float32"
    assert meta["template_hash"] and meta["rmscore_version"] and meta["max_length"] == 2048
    loaded = load_dataset("parquet", data_dir=str(tmp_path / "out"), split="train")
    assert len(loaded) == 4 and "score" in loaded.column_names


def test_a_template_error_is_a_row_status(tiny_models, copy_model, write_jsonl, tmp_path):
    """A template that raises on one conversation (strict role alternation) costs that row only."""
    model_dir = copy_model(tiny_models["llama"])
    import json

    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    for leftover in model_dir.glob("chat_template.*"):
        leftover.unlink()
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    bad = {"messages": [{"role": "system", "content": "s"}, *good["messages"]]}
    summary, out = score(write_jsonl([good, bad]), model_dir, tmp_path / "out", 300)
    assert [r["status"] for r in out] == ["ok", "invalid_row"]
    assert "no system" in out[1]["status_detail"]
