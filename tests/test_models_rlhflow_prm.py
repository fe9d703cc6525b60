"""rlhflow-prm: one forward over the whole step conversation equals the reference's one forward
per step (re-scoring the growing conversation and reading logits[:, -3])."""

import random

import pytest
from typer.testing import CliRunner

from rmscore.cli import app

from rmscore.models.rlhflow_prm import RlhflowPrmModel
from prm_cards import rlhflow_reference, rlhflow_split
from tiny_prm import count_backbone_rows, save_rlhflow, score_cli, step_rows, write_rows

TOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_rlhflow(tmp_path_factory.mktemp("prm") / "rlhflow")


@pytest.fixture(scope="module")
def reference(model_dir):
    return rlhflow_reference(model_dir)


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    assert max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


def test_one_pass_equals_incremental_reference(model_dir, reference, tmp_path, monkeypatch):
    rows = step_rows(10, seed=7)
    random.Random(2).shuffle(rows)
    want = [reference(r["prompt"], r["steps"]) for r in rows]
    path = write_rows(tmp_path / "in.jsonl", rows)
    seen = count_backbone_rows(monkeypatch, RlhflowPrmModel)
    for budget in (200, 1000, 100_000):
        seen.clear()
        seen.forwards = 0
        out = score_cli(path, model_dir, tmp_path / f"out{budget}", "--model-type", "rlhflow-prm",
                        "--max-tokens-per-batch", budget)
        assert [r["status"] for r in out] == ["ok"] * len(rows)
        for row, expected in zip(out, want):
            assert_close(row["step_scores"], expected)
        assert sum(seen) == len(rows)  # one forward per completion, not one per step
        assert seen.forwards == len(seen)
    assert len(seen) < len(rows)


def test_completion_split_as_the_evaluation_script(model_dir, reference, tmp_path):
    answer = "Step one.\n\nStep two: 3 + 4 = 7\n\n\n\n  The answer is 7.\n\n"
    rows = [{"prompt": "What is 3 + 4?", "completion": answer}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out",
                    "--model-type", "rlhflow-prm", "--aggregate", "mean")
    steps = rlhflow_split(answer)
    assert len(steps) == 3
    assert_close(out[0]["step_scores"], reference("What is 3 + 4?", steps))
    assert abs(out[0]["score"] - sum(out[0]["step_scores"]) / 3) < 1e-12


def test_crlf_blank_lines_split_as_blank_lines(model_dir, reference, tmp_path):
    rows = [{"prompt": "q", "completion": "A = 1\r\n\r\nB = 2"}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--model-type", "rlhflow-prm")
    assert_close(out[0]["step_scores"], reference("q", ["A = 1", "B = 2"]))


def test_no_system_turn_from_data_or_option(model_dir, tmp_path):
    """The reference's conversation has no system turn: one in the data is flagged, and
    --system-prompt, which would add one to every row, stops the run."""
    rows = [{"prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}], "steps": ["a"]}]
    path = write_rows(tmp_path / "in.jsonl", rows)
    out = score_cli(path, model_dir, tmp_path / "out", "--model-type", "rlhflow-prm")
    assert out[0]["status"] == "invalid_row" and "no system turn" in out[0]["status_detail"]
    result = CliRunner().invoke(app, ["score", str(path), "-m", str(model_dir), "-o", str(tmp_path / "o"),
                                      "--model-type", "rlhflow-prm", "--system-prompt", "Be terse."])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "rlhflow-prm takes no system prompt" in result.output and "drop --system-prompt" in result.output
