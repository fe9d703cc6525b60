"""What every process reward model shares: step splitting, aggregates, row statuses, and the
errors that stop a run when steps and model do not fit together."""

import math

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from rmscore.cli import app
from rmscore.io.output import read_metadata
from rmscore.models.steps import aggregates, split_steps
from tiny_prm import save_qwen_prm, save_step_tag, score_cli, step_rows, write_rows


@pytest.fixture(scope="module")
def prm(tmp_path_factory):
    return save_qwen_prm(tmp_path_factory.mktemp("prm") / "qwen-prm")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": ""})


def one_line_error(result, *needles):
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error: ")]) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_split_rule():
    assert split_steps("a\n\nb \n\n\n\n c\n\n", "\n\n") == ["a", "b", "c"]
    assert split_steps("one line", "\n") == ["one line"]
    assert split_steps("x\n\n \n\ny", "\n\n") == ["x", "", "y"]  # the reference keeps a blank step


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
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), prm, tmp_path / "out")
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


def test_one_question_families_flag_multi_turn_prompts(tmp_path):
    model = save_step_tag(tmp_path / "step-tag")
    rows = [{"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}], "completion": "a"}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model, tmp_path / "out", "--model-type", "step-tag")
    assert out[0]["status"] == "invalid_row" and "one user question" in out[0]["status_detail"]


def test_outcome_model_given_steps_stops_and_says_what_to_pass(tiny_models, tmp_path):
    rows = [{"prompt": "q", "completion": "a\n\nb", "steps": ["a", "b"]}]
    path = write_rows(tmp_path / "in.jsonl", rows)
    orm = tiny_models["llama"]
    one_line_error(invoke("score", path, "-m", orm, "-o", tmp_path / "o"),
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


def test_models_lists_the_process_reward_models():
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("step-tag", "qwen-prm", "skywork-prm", "rlhflow-prm"):
        assert f"{name}\n" in result.output
