"""skywork-prm: a native Qwen2 + v_head loaded by the published names equals Skywork's reference."""

import random

import pytest

from rmscore.store.output import read_metadata
from prm_cards import skywork_prm_reference
from tiny_prm import save_skywork_prm, score_cli, step_rows, write_rows

TOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_skywork_prm(tmp_path_factory.mktemp("prm") / "skywork-prm")


@pytest.fixture(scope="module")
def reference(model_dir):
    return skywork_prm_reference(model_dir)


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    assert max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


def read_steps(response: str, scores: list[float]) -> list[float]:
    """The reference's scores at its pieces that are steps: a blank line's newline is not one."""
    pieces = response.split("\n")
    assert len(pieces) == len(scores)
    return [score for score, piece in zip(scores, pieces) if piece.strip()]


def test_lines_of_the_completion_equal_the_reference_at_any_budget_and_order(model_dir, reference, tmp_path):
    """The reference's own input is (problem, response), every line a piece: rmscore builds the very
    same tokens, blank lines and CRLF line endings included, and reads the lines that hold text."""
    rng = random.Random(5)
    rows = []
    for r in step_rows(10, seed=5):
        joiner = rng.choice(["\n", "\n\n", "\r\n", "\r\n  \r\n"])
        rows.append({"prompt": r["prompt"], "completion": joiner.join(r["steps"]) + rng.choice(["", "\n"])})
    want = []
    for r in rows:
        response = r["completion"].replace("\r\n", "\n")
        want.append(read_steps(response, reference(r["prompt"], response)))
    path = write_rows(tmp_path / "in.jsonl", rows)
    for budget in (150, 800, 100_000):  # model type auto: config.json says Qwen2ForPrmModel
        out = score_cli(path, model_dir, tmp_path / f"out{budget}", "--max-tokens-per-batch", budget)
        assert [r["status"] for r in out] == ["ok"] * len(rows)
        for row, expected, given in zip(out, want, rows):
            assert_close(row["step_scores"], expected)
            assert len(expected) == len([line for line in given["completion"].splitlines() if line.strip()])
    assert any("\r\n  \r\n" in r["completion"] for r in rows) and any(r["completion"].endswith("\n") for r in rows)
    assert read_metadata(tmp_path / "out150")["model_type"] == "skywork-prm"


def test_steps_column_is_one_piece_per_step(model_dir, reference, tmp_path):
    """Steps without newlines inside: exactly the reference on the steps joined by newlines."""
    rows = step_rows(6, seed=6)
    out = score_cli(write_rows(tmp_path / "in.jsonl", rows), model_dir, tmp_path / "out", "--aggregate", "last")
    for row, given in zip(out, rows):
        assert_close(row["step_scores"], reference(given["prompt"], "\n".join(given["steps"])))
        assert row["score"] == row["score_last"] == row["step_scores"][-1]


def test_step_separator_never_changes_the_token_read(model_dir, reference, tmp_path):
    """--step-separator cuts text into pieces; the model reads the newline it was trained on after
    each piece, whatever cut it: the reference on the pieces one per line."""
    given = write_rows(tmp_path / "steps.jsonl", [{"prompt": "q", "steps": ["one two", "three", "four"]}])
    out = score_cli(given, model_dir, tmp_path / "out", "--step-separator", ";")
    assert_close(out[0]["step_scores"], reference("q", "one two\nthree\nfour"))
    split = write_rows(tmp_path / "split.jsonl", [{"prompt": "q", "completion": "one two; three; four"}])
    out = score_cli(split, model_dir, tmp_path / "split", "--step-separator", ";")
    assert_close(out[0]["step_scores"], reference("q", "one two\n three\n four"))
    meta = read_metadata(tmp_path / "out")
    assert meta["step_separator"] == ";" and meta["read_token"] == "\n"
