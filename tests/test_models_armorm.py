"""ArmoRM, native: equals the card's recipe (modeling_custom.py at batch size 1) at any batching."""

import json

import pytest

from tiny_orm import armorm_reference, load_ref_armorm, messages_of, mixed_rows, save_armorm, score_rows, shuffled

TOL = 1e-5


@pytest.fixture(scope="module")
def armorm(tmp_path_factory):
    return save_armorm(tmp_path_factory.mktemp("models") / "armorm")


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_equals_reference_at_any_batching_and_order(armorm, write_jsonl, tmp_path):
    rows = mixed_rows(seed=1)
    model, tokenizer = load_ref_armorm(armorm)
    expected = {(i, j): armorm_reference(model, tokenizer, messages_of(r, c))
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    mixed = shuffled(rows)
    for budget, data in ((64, rows), (300, mixed), (5000, mixed)):
        summary, out = score_rows(write_jsonl(data, f"in{budget}.jsonl"), armorm, tmp_path / f"o{budget}", budget,
                                  model_type="auto")
        assert summary.model_type == "armorm" and summary.statuses == {"ok": len(expected)}
        for r in out:
            orig = data[r["input_index"]].get("orig", r["input_index"])
            score, rewards, gating = expected[(orig, r["completion_index"])]
            assert abs(r["score"] - score) < TOL
            assert max_diff(r["rewards"], rewards) < TOL and max_diff(r["gating_output"], gating) < TOL
    assert summary.batches < len(expected)  # the big budget really batched rows together


def test_the_gate_reads_the_last_prompt_turn(armorm):
    """In a multi-turn prompt the pattern occurs once per assistant turn; the gate must read the
    <|eot_id|> closing the last user turn, not an earlier one."""
    from rmscore.config import ModelConfig
    from rmscore.models import load_model
    from rmscore.score.records import Sample

    model, _ = load_model(ModelConfig(str(armorm)))
    prompt = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    enc = model.encode([Sample(0, 0, None, prompt, False, "d")])[0]
    eot = model.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    eots = [i for i, t in enumerate(enc.ids) if t == eot]
    assert enc.positions == [eots[-2], len(enc.ids) - 1]  # eots[-1] ends the reply itself


def test_output_columns_and_objective_names(armorm, write_jsonl, tmp_path):
    from rmscore.store.output import read_metadata

    _, out = score_rows(write_jsonl(mixed_rows(seed=2)[:1]), armorm, tmp_path / "o", 500)
    assert len(out[0]["rewards"]) == 19 and len(out[0]["gating_output"]) == 19
    meta = read_metadata(tmp_path / "o")
    assert meta["objectives"][0] == "helpsteer-helpfulness" and meta["objectives"][-1] == "code-readability"
    assert meta["bos"] == "template"


def test_a_conversation_without_the_gate_pattern_is_a_row_status(armorm, write_jsonl, tmp_path):
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    rows = mixed_rows(seed=3)[:2]
    summary, out = score_rows(write_jsonl(rows), armorm, tmp_path / "o", 500, chat_template=chatml)
    assert {r["status"] for r in out} == {"invalid_row"} and out[0]["score"] is None
    assert "gate" in out[0]["status_detail"] and summary.rows_read == 2


def test_missing_head_weights_stop_with_a_clear_error(armorm, copy_model, write_jsonl, tmp_path):
    from safetensors.torch import load_file, save_file

    from rmscore.errors import ModelError

    broken = copy_model(armorm)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("gating.")}, broken / "model.safetensors")
    with pytest.raises(ModelError, match="missing 9"):
        score_rows(write_jsonl(mixed_rows()[:1]), broken, tmp_path / "o", 500)
    config = json.loads((broken / "config.json").read_text())
    assert config["architectures"] == ["LlamaForRewardModelWithGating"]


def test_score_column_picks_one_objective_everywhere(armorm, write_jsonl, tmp_path):
    """--score-column helpsteer-correctness (or rewards[1]) ranks by that objective in build-pairs,
    best-of-n and eval, checked against the rewards lists of the scored rows."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from rmscore.cli import app
    from tiny import completions_rows

    def run(*args):
        result = CliRunner().invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": ""})
        assert result.exit_code == 0, result.output
        return result

    rows = completions_rows(n_prompts=4, n_completions=3, seed=5)
    for row in rows:
        row["right"] = [1, 0, 0]
    run("score", write_jsonl(rows), "-m", armorm, "-o", tmp_path / "s", "--keep-columns", "right")
    scored = pq.read_table(tmp_path / "s").to_pylist()
    correctness = {(r["input_index"], r["completion_index"]): r["rewards"][1] for r in scored}
    by_name, by_index = tmp_path / "name.parquet", tmp_path / "index.parquet"
    run("build-pairs", tmp_path / "s", "-o", by_name, "--score-column", "helpsteer-correctness")
    run("build-pairs", tmp_path / "s", "-o", by_index, "--score-column", "rewards[1]")
    pairs = pq.read_table(by_name).to_pylist()
    assert [p["score_chosen"] for p in pairs] == [p["score_chosen"] for p in pq.read_table(by_index).to_pylist()]
    for i, pair in enumerate(pairs):
        mine = [correctness[(i, j)] for j in range(3)]
        assert (pair["score_chosen"], pair["score_rejected"]) == (max(mine), min(mine))
    best = run("best-of-n", tmp_path / "s", "--label-column", "right", "--score-column", "helpsteer-correctness",
               "--n", "3", "-o", tmp_path / "bon")
    report = json.loads((tmp_path / "bon" / "bestofn.json").read_text())
    picks = [max(range(3), key=lambda j: correctness[(i, j)]) == 0 for i in range(4)]
    assert report["accuracy"]["reward_model"] == [sum(picks) / 4] and "reward model" in best.output
    eval_rows = [{"prompt": r["prompt"], "chosen": r["completions"][0], "rejected": r["completions"][1]} for r in rows]
    run("eval", write_jsonl(eval_rows, "pairs.jsonl"), "-m", armorm, "-o", tmp_path / "e",
        "--score-column", "helpsteer-correctness")
    wins = [correctness[(i, 0)] > correctness[(i, 1)] for i in range(4)]  # the same texts: the same rewards
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["accuracy"] == sum(wins) / 4
