"""What every process reward model shares: step splitting, aggregates, row statuses, and the
errors that stop a run when steps and model do not fit together."""

import math

import pyarrow.dataset as ds
import pytest

from rmscore.store.output import read_metadata
from rmscore.models.steps import aggregates, split_steps
from prm_cards import qwen_prm_reference
from tiny_prm import (
    save_qwen_prm, save_rlhflow, save_skywork_prm, save_step_tag, score_cli, step_rows, write_rows,
)
from cli_runner import invoke

TOL = 1e-5
# What each card's reference takes as the prompt: one question, and a system turn only in Qwen's.
CARD_TAKES_SYSTEM = {"qwen-prm": True, "step-tag": False, "skywork-prm": False, "rlhflow-prm": False}


@pytest.fixture(scope="module")
def prm(tmp_path_factory):
    return save_qwen_prm(tmp_path_factory.mktemp("prm") / "qwen-prm")


@pytest.fixture(scope="module")
def reference(prm):
    return qwen_prm_reference(prm)


@pytest.fixture(scope="module")
def families(prm, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    saves = {"step-tag": save_step_tag, "skywork-prm": save_skywork_prm, "rlhflow-prm": save_rlhflow}
    return {"qwen-prm": prm, **{name: save(root / name) for name, save in saves.items()}}


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    assert max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


def one_line_error(result, *needles):
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error: ")]) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_split_rule():
    assert split_steps("a\n\nb \n\n\n\n c\n\n", "\n\n") == ["a", "b", "c"]
    assert split_steps("one line", "\n") == ["one line"]
    assert split_steps("x\n\n \n\ny", "\n\n") == ["x", "y"]  # a whitespace-only piece is no step
    assert split_steps("A = 1\r\n\r\nB = 2\rC", "\n\n") == ["A = 1", "B = 2\nC"]  # CRLF and CR are newlines
    assert split_steps("A = 1\n  \nB = 2", "\n") == ["A = 1", "B = 2"]


def test_aggregates_by_hand():
    got = aggregates([0.5, 0.25, 0.75])
    assert got == {"score_min": 0.25, "score_prod": 0.09375, "score_mean": 0.5, "score_last": 0.75}


@pytest.mark.parametrize("aggregate", ["min", "prod", "mean", "last"])
def test_score_is_the_chosen_aggregate_and_metadata_says_which(prm, tmp_path, aggregate):
    path = write_rows(tmp_path / "in.jsonl", step_rows(4, seed=9))
    out = score_cli(path, prm, tmp_path / "out", "--aggregate", aggregate)
    for row in out:
        steps = row["step_scores"]
        by_hand = {"min": min(steps), "prod": math.prod(steps), "mean": sum(steps) / len(steps), "last": steps[-1]}
        for name, value in by_hand.items():
            assert abs(row[f"score_{name}"] - value) < 1e-12
        assert row["score"] == row[f"score_{aggregate}"]
    assert read_metadata(tmp_path / "out")["aggregate"] == aggregate


def test_rows_without_steps_are_statuses_not_crashes(prm, tmp_path):
    rows = [
        {"prompt": "q", "completion": "fine\n\nsteps", "steps": None},  # null: split the completion
        {"prompt": "q", "completion": "   \n"},
        {"prompt": "q", "completion": "x", "steps": []},
        {"prompt": "q", "completion": "x", "steps": "not a list"},
    ]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), prm, tmp_path / "out", "--steps-col", "steps")
    assert [r["status"] for r in out] == ["ok", "invalid_row", "invalid_row", "invalid_row"]
    assert "completion is empty" in out[1]["status_detail"] and "steps list is empty" in out[2]["status_detail"]
    assert "list of strings" in out[3]["status_detail"]
    assert out[1]["step_scores"] is None and out[1]["score_min"] is None
    assert ds.dataset(str(tmp_path / "out")).schema.field("step_scores").type.value_type.bit_width == 64


def test_steps_only_rows_keep_their_text_in_the_output(prm, tmp_path):
    rows = [{"problem": "2 + 2?", "steps": ["2 + 2 = 4", "The answer is 4"]}, {"problem": "x", "steps": None}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), prm, tmp_path / "out", "--prompt-col", "problem")
    assert out[0]["completion"] == "2 + 2 = 4\n\nThe answer is 4" and len(out[0]["step_scores"]) == 2
    assert out[1]["status"] == "invalid_row" and "steps is null" in out[1]["status_detail"]


@pytest.mark.parametrize("family", list(CARD_TAKES_SYSTEM))
def test_one_prompt_rule_for_every_family(families, family, tmp_path):
    """Every PRM card scores one user question. A system turn only where the card has one, and
    the same whether it comes from the data or from --system-prompt."""
    user, system = {"role": "user", "content": "2 + 2?"}, {"role": "system", "content": "Be terse."}
    rows = [{"prompt": [system, user], "steps": ["2 + 2 = 4", "4"]},
            {"prompt": [user, {"role": "assistant", "content": "4"}, user], "steps": ["4"]},
            {"prompt": [{"role": "assistant", "content": "Hi"}, user], "steps": ["4"]}]
    model, kind = families[family], ("--model-type", family)
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model, tmp_path / "out", *kind)
    takes_system = CARD_TAKES_SYSTEM[family]
    assert [r["status"] for r in out] == ["ok" if takes_system else "invalid_row", "invalid_row", "invalid_row"]
    assert all(family in r["status_detail"] and "one user question" in r["status_detail"] for r in out[1:])
    plain = write_rows(tmp_path / "plain.jsonl", [{"prompt": "2 + 2?", "steps": ["2 + 2 = 4", "4"]}])
    if takes_system:
        option = score_cli(plain, model, tmp_path / "option", *kind, "--system-prompt", "Be terse.")
        assert_close(option[0]["step_scores"], out[0]["step_scores"])
    else:
        one_line_error(invoke("score", plain, "-m", model, "-o", tmp_path / "o", *kind, "--system-prompt", "Be terse."),
                       f"{family} takes no system prompt", "drop --system-prompt")


def test_steps_beside_completions_are_one_list_per_completion(prm, reference, tmp_path):
    """A flat list beside completions would give every completion the same steps: refused per row,
    with what to do. Nested, each completion is scored on its own steps (null: split its text)."""
    rows = [{"prompt": "q", "completions": ["a\n\nb", "c"], "steps": ["s1", "s2", "s3"]},
            {"prompt": "q", "completions": ["a\n\nb", "c", "d\n\ne"], "steps": [["s1", "s2"], ["t1"], None]},
            {"prompt": "q", "completions": ["a", "c"], "steps": [["s1"]]},
            {"prompt": "q", "completions": ["a"], "steps": [["s1", 2]]}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), prm, tmp_path / "out", "--steps-col", "steps")
    flat, nested, short, mixed = out[:2], out[2:5], out[5:7], out[7]
    assert [r["status"] for r in flat + short + [mixed]] == ["invalid_row"] * 5
    assert "one list of steps per completion" in flat[0]["status_detail"]
    assert "every completion the same steps" in flat[1]["status_detail"] and "--steps-col ''" in flat[1]["status_detail"]
    assert "has 1 list of steps for 2 completions" in short[0]["status_detail"]
    assert "'steps[0]' must be a list of strings, got a list of int and str" in mixed["status_detail"]
    for row, steps in zip(nested, (["s1", "s2"], ["t1"], ["d", "e"])):
        assert row["status"] == "ok"
        assert_close(row["step_scores"], reference("q", steps))


def test_an_empty_step_given_is_flagged_not_scored(prm, tmp_path):
    rows = [{"prompt": "q", "steps": ["a", " \n", "b"]}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), prm, tmp_path / "out")
    assert out[0]["status"] == "invalid_row" and "step 2 of 3 in the steps list is empty" in out[0]["status_detail"]


def test_outcome_model_given_steps_stops_and_says_what_to_pass(tiny_models, tmp_path):
    rows = [{"prompt": "q", "completion": "a\n\nb", "steps": ["a", "b"]}]
    path = write_rows(tmp_path / "in.jsonl", rows)
    orm = tiny_models["llama"]
    one_line_error(invoke("score", path, "-m", orm, "-o", tmp_path / "o"),  # completion and steps: two shapes
                   "two shapes, prompt+completion and prompt+steps", "--steps-col ''")
    one_line_error(invoke("score", path, "-m", orm, "-o", tmp_path / "o", "--steps-col", "steps"),
                   "step column 'steps'", "outcome reward model", "--model-type", "qwen-prm", "--steps-col ''")
    renamed = write_rows(tmp_path / "renamed.jsonl", [{"prompt": "q", "completion": "a", "my_steps": ["a"]}])
    one_line_error(invoke("score", renamed, "-m", orm, "-o", tmp_path / "o", "--steps-col", "my_steps"),
                   "step column 'my_steps'")
    assert invoke("score", path, "-m", orm, "-o", tmp_path / "ok", "--steps-col", "").exit_code == 0
    one_line_error(invoke("score", path, "-m", orm, "-o", tmp_path / "o", "--steps-col", "", "--step-separator", "x"),
                   "--step-separator", "process reward models")


def test_steps_column_with_chosen_rejected_is_refused(prm, tmp_path):
    path = write_rows(tmp_path / "in.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "steps": ["a"]}])
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o"), "chosen/rejected", "--steps-col ''")
    out = score_cli(path, prm, tmp_path / "ok", "--steps-col", "")
    assert [r["side"] for r in out] == ["chosen", "rejected"] and all(r["status"] == "ok" for r in out)


def test_bad_step_options_are_one_line_errors(prm, tmp_path):
    path = write_rows(tmp_path / "in.jsonl", step_rows(1))
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o", "--step-tokens", "ки +"), "three tokens")
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o", "--step-tokens", "ки + -"),
                   "--step-tokens does not apply to qwen-prm")
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o", "--step-separator", ""), "empty")
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o", "--aggregate", "max"), "min, prod, mean")
    one_line_error(invoke("score", path, "-m", prm, "-o", tmp_path / "o", "--bos", "double"), "--bos")


def test_models_lists_the_process_reward_models_and_their_prompt_rule():
    result = invoke("models")
    assert result.exit_code == 0
    blocks, name = {}, None
    for line in result.output.splitlines():
        if line and not line.startswith(" "):
            name, blocks[line] = line, ""
        elif name:
            blocks[name] += line + "\n"
    for family, takes_system in CARD_TAKES_SYSTEM.items():
        rule = "after an optional system turn (from the data or --system-prompt" if takes_system else "no system turn"
        assert f"prompt:  one user question, {rule}" in blocks[family], blocks[family]
    assert "prompt:  any: the question is the last user turn" in blocks["deberta-pair"]
    assert "--step-separator changes the cut, never the newline read" in blocks["skywork-prm"]
