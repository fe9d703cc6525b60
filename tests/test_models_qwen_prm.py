"""qwen-prm: a native Qwen2 + MLP head loaded by the published names equals the card's code."""

import json
import random

import pyarrow.dataset as ds
import pytest

from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from rmscore.errors import ModelError
from rmscore.store.output import read_metadata
from rmscore.models.qwen_prm import QwenPrmModel
from rmscore.score.run import run_score
from prm_cards import qwen_prm_reference
from tiny_prm import (
    count_backbone_rows, prm800k_rows, prm800k_step_rows, save_qwen_prm, score_cli, step_rows, write_rows,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_qwen_prm(tmp_path_factory.mktemp("prm") / "qwen-prm")


@pytest.fixture(scope="module")
def reference(model_dir):
    return qwen_prm_reference(model_dir)


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    assert max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


def test_detected_from_config_and_equals_card_at_any_budget_and_order(model_dir, reference, tmp_path):
    rows = step_rows(10, seed=3)
    random.Random(1).shuffle(rows)
    want = [reference(r["prompt"], r["steps"]) for r in rows]
    path = write_rows(tmp_path / "in.jsonl", rows)
    for budget in (150, 900, 100_000):  # model type auto: config.json says Qwen2ForProcessRewardModel
        out = score_cli(path, model_dir, tmp_path / f"out{budget}", "--max-tokens-per-batch", budget)
        assert [r["status"] for r in out] == ["ok"] * len(rows)
        for row, expected in zip(out, want):
            assert_close(row["step_scores"], expected)
    meta = read_metadata(tmp_path / "out150")
    assert meta["model_type"] == "qwen-prm" and meta["aggregate"] == "min" and meta["step_separator"] == "\n\n"


def test_completion_split_on_blank_lines_as_the_card_recommends(model_dir, reference, tmp_path):
    rows = step_rows(5, seed=4)
    inputs = [{"prompt": r["prompt"], "completion": "\n\n".join(r["steps"]) + "\n\n"} for r in rows]
    out = score_cli(write_rows(tmp_path / "in.jsonl", inputs), model_dir, tmp_path / "out")
    for row, given in zip(out, rows):
        assert_close(row["step_scores"], reference(given["prompt"], given["steps"]))
    # --step-separator overrides the rule (escapes as typed on a shell)
    lines = [{"prompt": "q", "completion": "a b\nc d\ne"}]
    out = score_cli(write_rows(tmp_path / "l.jsonl", lines), model_dir, tmp_path / "l", "--step-separator", "\\n")
    assert_close(out[0]["step_scores"], reference("q", ["a b", "c d", "e"]))


def test_completion_already_marked_is_the_cards_assistant_turn(model_dir, reference, tmp_path):
    rows = [{"prompt": "q", "completion": "a b<extra_0>c\n\nd<extra_0>"}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out")
    assert_close(out[0]["step_scores"], reference("q", ["a b", "c\n\nd"]))


def test_crlf_blank_lines_split_as_blank_lines(model_dir, reference, tmp_path):
    rows = [{"prompt": "q", "completion": text} for text in ("A = 1\r\n\r\nB = 2", "A = 1\r\rB = 2\r\n \r\n")]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out")
    for row in out:
        assert_close(row["step_scores"], reference("q", ["A = 1", "B = 2"]))


def test_marked_completion_that_does_not_fit_is_flagged(model_dir, tmp_path):
    """The card's assistant turn ends every step with <extra_0>: text after the last one, or an
    empty step between two, would be scored wrong; the row says so."""
    rows = [{"prompt": "q", "completion": "a b<extra_0>and a tail"}, {"prompt": "q", "completion": "a<extra_0> <extra_0>"}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out")
    assert [r["status"] for r in out] == ["invalid_row", "invalid_row"]
    assert "after the last one" in out[0]["status_detail"] and "step 2 of 2" in out[1]["status_detail"]


def test_system_turn_from_data_or_option_is_the_same_turn_and_one_question_only(model_dir, reference, tmp_path):
    """The card's system turn is a default: a system turn in the data and --system-prompt replace
    it alike. A conversation of several user turns is no single question: flagged."""
    steps = ["2 + 2 = 4", "The answer is 4"]
    rows = [{"prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2 + 2?"}],
             "steps": steps},
            {"prompt": [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": "2"},
                        {"role": "user", "content": "2 + 2?"}], "steps": steps}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out")
    assert_close(out[0]["step_scores"], reference("2 + 2?", steps, system="Be terse."))
    assert out[1]["status"] == "invalid_row" and "one user question" in out[1]["status_detail"]
    option = score_cli(write_rows(tmp_path / "o.jsonl", [{"prompt": "2 + 2?", "steps": steps}]), model_dir,
                       tmp_path / "o", "--system-prompt", "Be terse.")
    assert option[0]["step_scores"] == out[0]["step_scores"]


def test_step_markers_in_user_text_are_removed(model_dir, reference, tmp_path):
    rows = [{"prompt": "add <extra_0>2 and 2", "steps": ["2 + 2<extra_0>", "= 4"]}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out")
    assert out[0]["status"] == "ok"
    assert_close(out[0]["step_scores"], reference("add 2 and 2", ["2 + 2", "= 4"]))


def test_auto_map_alone_is_enough_to_detect(model_dir, copy_model, tmp_path):
    copy = copy_model(model_dir)
    config = json.loads((copy / "config.json").read_text())
    config["architectures"] = None
    (copy / "config.json").write_text(json.dumps(config))
    out = score_cli(write_rows(tmp_path / "in.jsonl", step_rows(2)), copy, tmp_path / "out")
    assert all(r["status"] == "ok" for r in out)


def test_a_checkpoint_without_the_head_is_refused(tiny_models, tmp_path):
    """A seq-cls checkpoint named as qwen-prm: the registry says which family it is. One whose
    config claims the PRM architecture but lacks score.0/score.2: one clear error, no random head."""
    import json
    import shutil

    rows = str(write_rows(tmp_path / "in.jsonl", step_rows(1)))
    cfg = ScoreConfig(InputConfig(rows), OutputConfig(str(tmp_path / "out")),
                      ModelConfig(str(tiny_models["qwen2"]), model_type="qwen-prm"))
    with pytest.raises(ModelError, match="checkpoint of the seq-cls family"):
        run_score(cfg, log=lambda *_: None)
    fake = tmp_path / "fake-prm"
    shutil.copytree(tiny_models["qwen2"], fake)
    config = json.loads((fake / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps({**config, "architectures": ["Qwen2ForProcessRewardModel"]}))
    cfg = ScoreConfig(InputConfig(rows), OutputConfig(str(tmp_path / "out2")), ModelConfig(str(fake)))
    with pytest.raises(ModelError, match="does not have the weights.*score.0"):
        run_score(cfg, log=lambda *_: None)


def test_prm800k_real_rows_one_forward_per_completion(model_dir, reference, tmp_path, monkeypatch):
    trajectories = [{"prompt": r["problem"], "steps": r["steps"]} for r in prm800k_rows(50)]
    rated_steps = prm800k_step_rows(40)
    rows = trajectories + rated_steps
    path = write_rows(tmp_path / "in.jsonl", rows)
    seen = count_backbone_rows(monkeypatch, QwenPrmModel)
    # Padded rows: one backbone call per batch. (Prompt reuse runs shared prompts in forwards of
    # their own; tests/test_forward_paths.py checks its PRM scores.)
    cfg = ScoreConfig(InputConfig(str(path)), OutputConfig(str(tmp_path / "out")), ModelConfig(str(model_dir)),
                      BatchConfig(max_tokens_per_batch=8192, forward="padded"))
    summary = run_score(cfg, log=lambda *_: None)
    out = ds.dataset(str(tmp_path / "out")).to_table().to_pylist()
    scored = [r for r in out if r["status"] == "ok"]
    assert len(scored) >= len(rows) - 3  # a few trajectories exceed the tiny model's 4096 tokens
    assert {r["status"] for r in out} <= {"ok", "too_long"}
    assert len(seen) == summary.batches < len(scored)
    # Every completion in one forward, all its steps at once; a completion whose tokens repeat
    # another's (real data has such rows) is scored once, and its copies take the same numbers.
    distinct = {json.dumps(rows[r["input_index"]], sort_keys=True) for r in scored}
    assert len(distinct) - 2 <= sum(seen) <= len(distinct)
    assert seen.forwards == len(seen)
    for row in scored:
        assert len(row["step_scores"]) == len(rows[row["input_index"]]["steps"])
    for row in scored[:5] + scored[-5:]:
        given = rows[row["input_index"]]
        assert_close(row["step_scores"], reference(given["prompt"], given["steps"]))
