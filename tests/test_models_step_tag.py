"""step-tag (Math-Shepherd): rmscore's batched step scores equal the card's code at batch size 1."""

import random

import pyarrow.dataset as ds
import pytest

from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from rmscore.score.run import run_score
from rmscore.models.step_tag import StepTagModel
from prm_cards import step_tag_reference
from tiny_prm import count_backbone_rows, prm800k_rows, save_step_tag, score_cli, step_rows, write_rows

TOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_step_tag(tmp_path_factory.mktemp("prm") / "math-shepherd")


@pytest.fixture(scope="module")
def reference(model_dir):
    return step_tag_reference(model_dir)


def card_output(steps):
    """The card's solution format: each step ends with " ки", one step per line."""
    return "\n".join(f"{s} ки" for s in steps)


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    assert max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


def test_steps_column_equals_card_at_any_budget_and_order(model_dir, reference, tmp_path):
    rows = step_rows(10, seed=1)
    random.Random(0).shuffle(rows)
    want = [reference(r["prompt"], card_output(r["steps"])) for r in rows]
    path = write_rows(tmp_path / "in.jsonl", rows)
    for budget in (150, 700, 100_000):
        out = score_cli(path, model_dir, tmp_path / f"out{budget}", "--model-type", "step-tag",
                        "--max-tokens-per-batch", budget)
        assert [r["status"] for r in out] == ["ok"] * len(rows)
        for row, expected in zip(out, want):
            assert_close(row["step_scores"], expected)
            assert row["score"] == row["score_min"] == min(row["step_scores"])


def test_tagged_completion_is_scored_as_the_card_scores_it(model_dir, reference, tmp_path):
    """A completion already in the card's format ("... ки\\nStep 2: ... ки") is the card's own input:
    split per line, the tags removed and added back, it renders to the very same text."""
    rows = step_rows(6, seed=2)
    inputs = [{"prompt": r["prompt"], "completion": card_output(r["steps"])} for r in rows]
    out = score_cli(write_rows(tmp_path / "in.jsonl", inputs), model_dir, tmp_path / "out", "--model-type", "step-tag")
    for row, given in zip(out, inputs):
        assert_close(row["step_scores"], reference(given["prompt"], given["completion"]))
        assert len(row["step_scores"]) == given["completion"].count("ки")


def test_tags_that_do_not_fit_the_cards_format_are_flagged(model_dir, tmp_path):
    """The card's format: one step per line, each ending with " ки". Text after the last tag, a
    line without one, or a tag inside a line would be scored wrong or not at all: the row says so."""
    given = ["Step 1: add ки Step 2: 12 + 7 = 19 ки\n\nso the answer is 19 ки and a tail",  # tail after the tag
             "Step 1: 12 + 7 = 19 ки\nStep 2: so the answer is 19",  # the last line never scored
             "Step 1: add ки Step 2: 12 + 7 = 19 ки"]  # two steps on one line
    rows = [{"prompt": "q", "completion": text} for text in given]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--model-type", "step-tag")
    assert [r["status"] for r in out] == ["invalid_row"] * 3 and out[0]["score"] is None
    assert "not line 3" in out[0]["status_detail"] and "not line 2" in out[1]["status_detail"]
    assert "line 1 holds the step tag" in out[2]["status_detail"]


@pytest.fixture(scope="module")
def word_tag_dir(tmp_path_factory):
    return save_step_tag(tmp_path_factory.mktemp("prm") / "word-tag", tag_in_words=False)


def test_russian_text_holding_the_tags_letters_is_not_tagged(model_dir, word_tag_dir, tmp_path):
    """ "русский" holds the letters of "ки": still one step per line, scored as the card scores
    those lines tagged, the text unchanged. With a tokenizer that reads the tag inside the word (as
    the card's code then would), the row is flagged, never read mid-word."""
    question = "Сколько будет 2 + 2? Ответь по-русски."
    lines = ["Это русский текст: 2 + 2 = 4", "значит ответ 4", "Ответ: 4"]
    rows = [{"prompt": question, "completion": "\n".join(lines)}]
    path = write_rows(tmp_path / "in.jsonl", rows)
    out = score_cli(path, word_tag_dir, tmp_path / "out", "--model-type", "step-tag")
    assert out[0]["status"] == "ok", out[0]["status_detail"]
    assert_close(out[0]["step_scores"], step_tag_reference(word_tag_dir)(question, card_output(lines)))
    flagged = score_cli(path, model_dir, tmp_path / "flagged", "--model-type", "step-tag")
    assert flagged[0]["status"] == "step_mismatch" and "for 3 steps" in flagged[0]["status_detail"]


def test_blank_lines_and_crlf_make_no_steps(model_dir, reference, tmp_path):
    rows = [{"prompt": "q", "completion": text} for text in ("A = 1\n  \nB = 2", "A = 1\r\n\r\nB = 2", "A = 1\rB = 2\n")]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--model-type", "step-tag")
    want = reference("q", card_output(["A = 1", "B = 2"]))
    for row in out:
        assert_close(row["step_scores"], want)


def test_tags_in_user_text_are_removed_so_counts_match(model_dir, reference, tmp_path):
    rows = [{"prompt": "what is ки 2 + 2", "steps": ["2 + 2 ки", "so ки 4"]}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--model-type", "step-tag")
    assert out[0]["status"] == "ok"
    assert_close(out[0]["step_scores"], reference("what is  2 + 2", card_output(["2 + 2", "so  4"])))


def test_a_tag_that_tokenizes_differently_is_flagged_not_misread(model_dir, tmp_path):
    """--step-tokens 'the + -': " the" after a step is the token "Ġthe", never the tag id of "the",
    so the tag count cannot match the steps: the row says so instead of scoring the wrong positions."""
    rows = [{"prompt": "q", "steps": ["a b", "c"]}]
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--model-type", "step-tag",
                    "--step-tokens", "the + -")
    assert out[0]["status"] == "step_mismatch" and out[0]["score"] is None
    assert "for 2 steps" in out[0]["status_detail"]


def test_prm800k_real_rows_one_forward_per_completion(model_dir, reference, tmp_path, monkeypatch):
    """Real PRM800K trajectories: every step of a completion comes out of the one forward that
    holds the completion; each completion is in exactly one forward."""
    rows = prm800k_rows(40)
    path = write_rows(tmp_path / "in.jsonl", [{"prompt": r["problem"], "steps": r["steps"]} for r in rows])
    seen = count_backbone_rows(monkeypatch, StepTagModel)
    cfg = ScoreConfig(InputConfig(str(path)), OutputConfig(str(tmp_path / "out")),
                      ModelConfig(str(model_dir), model_type="step-tag"), BatchConfig(max_tokens_per_batch=4096))
    summary = run_score(cfg, log=lambda *_: None)
    assert summary.statuses["ok"] == len(rows)
    assert len(seen) == summary.batches < len(rows)  # batched: fewer forwards than completions
    assert sum(seen) == len(rows)  # ... and each completion in exactly one of them
    assert seen.forwards == len(seen)
    out = ds.dataset(str(tmp_path / "out")).to_table().to_pylist()
    for row, given in list(zip(out, rows))[:8]:
        assert len(row["step_scores"]) == len(given["steps"])
        assert_close(row["step_scores"], reference(given["problem"], card_output(given["steps"])))


def test_other_step_tokens_refuse_to_resume(model_dir, tmp_path):
    """--step-tokens changes which logits are read: a rerun with other tokens must not mix its scores
    with the folder's."""
    from typer.testing import CliRunner

    from rmscore.cli import app

    path = write_rows(tmp_path / "in.jsonl", step_rows(3, seed=5))
    score_cli(path, model_dir, tmp_path / "out", "--model-type", "step-tag")
    argv = ["score", path, "-m", model_dir, "-o", tmp_path / "out", "--no-progress", "--model-type", "step-tag",
            "--step-tokens", "ки - +"]
    result = CliRunner().invoke(app, [str(a) for a in argv])
    assert result.exit_code == 2 and "--step-tokens was None, now 'ки - +'" in result.output, result.output
