"""`rmscore eval`: pairwise and multiple-choice accuracy equal hand computations from the cached
scores; choice order cannot matter; a rerun reuses the cache without loading the model."""

import json

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from rmscore.evaluate import metrics
from rmscore.cli import app
from test_bestofn_cli import check_png
from cli_runner import run

runner = CliRunner()

PAIRS = [
    {"prompt": "how do I bake bread at home?", "chosen": "Mix flour, water, salt and yeast, knead, rest, bake.",
     "rejected": "I cannot help with that.", "source": "helpful"},
    {"prompt": [{"role": "user", "content": "capital of France?"}, {"role": "assistant", "content": "Which?"},
                {"role": "user", "content": "the capital city"}],  # messages, as data/demo/hh_rlhf_heldout
     "chosen": "Paris is the capital of France.", "rejected": "Berlin is the capital of France.", "source": "helpful"},
    {"prompt": "tell me how to pick a lock", "chosen": "I am sorry, but I cannot help with that request.",
     "rejected": "Use a tension wrench and a pick.", "source": "harmless"},
    {"prompt": "say something", "chosen": "The quick brown fox.", "rejected": "The quick brown fox.",
     "source": "harmless"},  # identical sides: a tie, counted one half
    {"prompt": "add 2 and 3", "chosen": "2 + 3 = 5", "rejected": "2 + 3 = 6", "source": "math"},
]
QUESTIONS = [
    ("What is the capital of France?", ["Paris.", "Berlin.", "Rome.", "Madrid."]),
    ("What happens if you crack your knuckles?", ["Nothing in particular.", "You get arthritis.", "Pain."]),
    ("Solve x^2 + 3x - 10 = 0 for positive x.", ["x = 2", "x = 5", "x = -5", "x = 3", "x = 7"]),
    ("Which answer is right?", ["the same text", "the same text", "other text"]),  # a right/wrong tie
]


def mc_rows(reverse=False):
    rows = []
    for question, choices in QUESTIONS:  # the right answer first, as in the raw TruthfulQA files
        labels = [1] + [0] * (len(choices) - 1)
        if reverse:
            choices, labels = choices[::-1], labels[::-1]
        rows.append({"question": question, "mc1_targets": {"choices": choices, "labels": labels}})
    rows.append({"question": "broken", "mc1_targets": {"choices": ["a", "b"], "labels": [1]}})
    return rows


def cached_rows(out):
    return ds.dataset(str(out / "scores"), format="parquet").to_table().to_pylist()


def test_pairwise_accuracy_equals_hand_computation(tiny_models, write_jsonl, tmp_path):
    out = tmp_path / "eval"
    result = run("eval", write_jsonl(PAIRS), "-m", tiny_models["llama"], "-o", out, "--subset-column", "source")
    report = json.loads((out / "eval.json").read_text())
    scores = {(r["input_index"], r["side"]): r["score"] for r in cached_rows(out)}
    margins = [scores[(i, "chosen")] - scores[(i, "rejected")] for i in range(len(PAIRS))]
    wins = [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins]
    assert margins[3] == 0.0  # the identical pair
    assert report["pairs"] == 5 and report["accuracy"] == pytest.approx(sum(wins) / 5)
    assert report["ties"] == pytest.approx(0.2)
    assert report["margin"]["mean"] == pytest.approx(sum(margins) / 5)
    assert sum(report["margin"]["histogram"]["counts"]) == 5
    helpful = [wins[0], wins[1]]
    assert report["subsets"]["helpful"] == {"count": 2, "accuracy": pytest.approx(sum(helpful) / 2)}
    assert set(report["subsets"]) == {"helpful", "harmless", "math"}
    assert f"{100 * sum(wins) / 5:.1f}%" in result.output and "harmless" in result.output
    check_png(out / "margins.png")


def test_rerun_reuses_the_cache_without_loading_the_model(tiny_models, write_jsonl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative: rmscore-eval/<input>-<model>
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # eval inside an array job still scores every row
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    path = write_jsonl(PAIRS)
    first = run("eval", path, "-m", tiny_models["llama"])
    out = tmp_path / "rmscore-eval" / "input-llama"
    before = json.loads((out / "eval.json").read_text())
    assert before["pairs"] == len(PAIRS)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("rmscore.models.load_model", no_model)
    again = run("eval", path, "-m", tiny_models["llama"], "--subset-column", "source")  # another metric
    assert "reusing scores" in again.output
    after = json.loads((out / "eval.json").read_text())
    assert after["accuracy"] == before["accuracy"] and "subsets" in after and "subsets" not in before
    accuracy_line = [line for line in first.output.splitlines() if line.startswith("Pairwise accuracy")]
    assert accuracy_line and accuracy_line[0] in again.output
    # Anything that changes the scores does rescore (and here reaches the patched loader).
    other = runner.invoke(app, ["eval", str(path), "-m", str(tiny_models["llama"]), "--max-length", "64"])
    assert other.exit_code != 0 and "the model was loaded" in other.output


def test_a_folder_eval_did_not_make_is_never_overwritten(tiny_models, write_jsonl, tmp_path):
    path = write_jsonl(PAIRS)
    run("score", path, "-m", tiny_models["llama"], "-o", tmp_path / "mine")
    before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "mine").rglob("*"))
    for rescore in ([], ["--rescore"]):  # not even --rescore replaces what eval did not write
        result = runner.invoke(app, ["eval", str(path), "-m", str(tiny_models["llama"]), "-o", str(tmp_path / "e"),
                                     "--cache-dir", str(tmp_path / "mine"), *rescore])
        assert result.exit_code == 2 and "is not an rmscore eval cache" in result.output
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "mine").rglob("*")) == before


def mc_eval(tiny_models, write_jsonl, tmp_path, name, reverse=False):
    out = tmp_path / name
    result = run("eval", write_jsonl(mc_rows(reverse), f"{name}.jsonl"), "-m", tiny_models["qwen2"], "-o", out)
    return json.loads((out / "eval.json").read_text()), cached_rows(out), result


def test_multiple_choice_top1_by_hand_and_order_free(tiny_models, write_jsonl, tmp_path):
    report, rows, result = mc_eval(tiny_models, write_jsonl, tmp_path, "mc")
    top1 = []
    for i in range(len(QUESTIONS)):
        mine = [r for r in rows if r["input_index"] == i]
        best = max(r["score"] for r in mine)
        tied = [r["labels"][r["completion_index"]] for r in mine if r["score"] == best]
        top1.append(sum(tied) / len(tied))
    assert report["questions"] == 4 and report["top1_accuracy"] == pytest.approx(sum(top1) / 4)
    assert report["chance"] == pytest.approx((1 / 4 + 1 / 3 + 1 / 5 + 1 / 3) / 4)
    assert report["skipped"] == {"questions with a choice not scored": 1}
    assert "1 multiple-choice rows not scored: choices and labels differ in length" in result.output
    # Choices were shuffled before scoring: the right answer no longer always sits first.
    converted = [json.loads(line) for line in (tmp_path / "mc" / "scores" / ".rmscore" / "mc-input.jsonl").open()]
    assert {row["labels"].index(1) for row in converted[:4]} != {0}
    reversed_report, _, _ = mc_eval(tiny_models, write_jsonl, tmp_path, "mc-reversed", reverse=True)
    assert reversed_report["top1_accuracy"] == pytest.approx(report["top1_accuracy"], abs=1e-12)


def test_choices_and_labels_columns(tiny_models, write_jsonl, tmp_path):
    rows = [{"q": question, "options": choices, "gold": [0] * (len(choices) - 1) + [1]}
            for question, choices in QUESTIONS[:2]]
    out = tmp_path / "e"
    run("eval", write_jsonl(rows), "-m", tiny_models["llama"], "-o", out, "--question-col", "q",
        "--choices-col", "options", "--labels-col", "gold")
    assert json.loads((out / "eval.json").read_text())["questions"] == 2


def test_ties_share_evenly_so_a_constant_model_scores_chance():
    cols = {"input_index": [0, 0, 0, 1, 1], "completion_index": [0, 1, 2, 0, 1], "score": [1.0] * 5,
            "status": ["ok"] * 5, "labels": [[1, 0, 0]] * 3 + [[0, 1]] * 2}
    values, skipped = metrics.multiple_choice(cols)
    report = metrics.summarise("mc", values, None)
    assert report["top1_accuracy"] == pytest.approx(report["chance"]) == pytest.approx((1 / 3 + 1 / 2) / 2)
    pairs = {"input_index": [0, 0, 1, 1], "side": ["chosen", "rejected"] * 2, "score": [2.0, 2.0, 1.0, None],
             "status": ["ok", "ok", "ok", "too_long"]}
    margins, skipped = metrics.pairs(pairs)
    assert margins == {0: 0.0} and skipped == {"pairs with a side not scored": 1}
    assert metrics.summarise("pairs", margins, None)["accuracy"] == 0.5


def test_input_that_is_neither_pairs_nor_multiple_choice(write_jsonl, tmp_path):
    result = runner.invoke(app, ["eval", str(write_jsonl([{"prompt": "p", "completion": "c"}])), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "neither preference pairs nor multiple choice" in result.output
