"""`rmscore best-of-n` on the real GSM8K best-of-4 set, and through the real scoring path."""

import importlib.util
import json
import random
import struct

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from cli_runner import invoke


def load_recipe():
    spec = importlib.util.spec_from_file_location("gsm8k_bon", REPO / "recipes" / "gsm8k_bon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_png(path):
    """A real PNG a person can open: signature, a sane size in the header, and decodable pixels."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 300 < width < 3000 and 200 < height < 3000
    assert imread(path).shape[:2] == (height, width)


@pytest.fixture(scope="module")
def gsm8k_rows(tmp_path_factory):
    recipe = load_recipe()
    path = tmp_path_factory.mktemp("gsm8k") / "gsm8k.jsonl"
    assert recipe.convert(recipe.SOURCE, path) == 1319
    return [json.loads(line) for line in path.read_text().splitlines()]


def synthetic_scores(rows, out_dir, score_of):
    """A scored folder shaped like `rmscore score --keep-columns is_correct,answer` output, with a
    chosen score per completion (oracle and random do not depend on it)."""
    records = [
        {"input_index": i, "completion_index": j, "prompt_id": row["id"], "score": score_of(row, j),
         "status": "ok", "is_correct": row["is_correct"], "answer": row["answer"]}
        for i, row in enumerate(rows) for j in range(len(row["completions"]))
    ]
    out_dir.mkdir()
    meta = {b"rmscore": json.dumps({"model": "synthetic-rm", "input": "gsm8k.jsonl"}).encode()}
    table = pa.Table.from_pylist(records).replace_schema_metadata(meta)
    pq.write_table(table, out_dir / "part-00000-of-00001-00000.parquet")
    return out_dir


def test_gsm8k_anchors_oracle_and_random(gsm8k_rows, tmp_path):
    rng = random.Random(0)
    scored = synthetic_scores(gsm8k_rows, tmp_path / "scored", lambda row, j: rng.gauss(0, 1))
    result = invoke("best-of-n", scored, "--label-column", "is_correct", "--answer-column", "answer",
                    "-o", tmp_path / "bon")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bon" / "bestofn.json").read_text())
    assert report["n"] == [1, 2, 4]  # 8..64 capped at the 4 completions per prompt
    assert report["prompts"] == 1319 and report["completions"] == 5276
    assert round(100 * report["accuracy"]["oracle"][-1], 1) == 67.2
    assert round(100 * report["accuracy"]["random"][0], 1) == 37.9
    assert report["accuracy"]["reward_model"][0] == pytest.approx(report["accuracy"]["random"][0])
    assert "67.2%" in result.output and "37.9%" in result.output and "synthetic-rm" in result.output
    # Majority vote over all 4 answers, counted by hand (ties between answers shared evenly).
    expected = 0.0
    for row in gsm8k_rows:
        votes = {}
        for answer, right in zip(row["answer"], row["is_correct"]):
            if answer is not None:
                votes.setdefault(answer, []).append(right)
        top = max(len(v) for v in votes.values())
        winners = [v for v in votes.values() if len(v) == top]
        expected += sum(v[0] for v in winners) / len(winners)
    assert report["accuracy"]["majority_vote"][-1] == pytest.approx(expected / 1319)
    check_png(tmp_path / "bon" / "bestofn.png")


def test_a_perfect_reward_model_is_the_oracle(gsm8k_rows, tmp_path):
    # score = label: ties within the right and within the wrong completions, shared evenly.
    scored = synthetic_scores(gsm8k_rows, tmp_path / "scored", lambda row, j: float(row["is_correct"][j]))
    result = invoke("best-of-n", scored, "--label-column", "is_correct", "--n", "1,2,3,4")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:6]}
    for n in ("1", "2", "3", "4"):
        assert lines[n][0] == lines[n][2]  # reward model == oracle at every N


def test_real_scoring_path_with_per_completion_list_labels(gsm8k_rows, tiny_models, write_jsonl, tmp_path):
    rows = [{k: r[k] for k in ("id", "prompt", "completions", "is_correct", "answer")} for r in gsm8k_rows[:3]]
    for row in rows:  # short completions keep the tiny model fast
        row["completions"] = [c[-60:] for c in row["completions"]]
    path = write_jsonl(rows)
    scored = tmp_path / "scored"
    result = invoke("score", path, "-m", tiny_models["llama"], "-o", scored, "--id-col", "id",
                    "--keep-columns", "is_correct,answer")
    assert result.exit_code == 0, result.output
    result = invoke("best-of-n", scored, "--label-column", "is_correct", "-o", tmp_path / "bon")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bon" / "bestofn.json").read_text())
    out = ds.dataset(str(scored)).to_table().to_pylist()
    expected = 0.0
    for i, row in enumerate(rows):  # best-of-all: the label of the top-scored completion
        mine = [r for r in out if r["input_index"] == i]
        top = max(mine, key=lambda r: r["score"])
        expected += row["is_correct"][top["completion_index"]]
    assert report["n"][-1] == 4 and report["accuracy"]["reward_model"][-1] == pytest.approx(expected / 3)
    assert report["model"] == tiny_models["llama"].name


def test_missing_label_column_says_how_to_keep_it(gsm8k_rows, tmp_path):
    scored = synthetic_scores(gsm8k_rows[:5], tmp_path / "scored", lambda row, j: 0.0)
    result = invoke("best-of-n", scored, "--label-column", "correct")
    assert result.exit_code == 2 and "'correct'" in result.output and "--keep-columns" in result.output
    bad_n = invoke("best-of-n", scored, "--label-column", "is_correct", "--n", "1,two")
    assert bad_n.exit_code == 2 and "--n" in bad_n.output
    missing = invoke("best-of-n", tmp_path / "nowhere", "--label-column", "is_correct")
    assert missing.exit_code == 2 and "not found" in missing.output


def test_a_null_prompt_id_is_one_line_error(tmp_path):
    """Hand-written input: which completions compete for a row without a prompt_id is unknown."""
    rows = [{"input_index": i, "completion_index": 0, "prompt_id": pid, "score": float(i), "status": "ok",
             "right": i % 2} for i, pid in enumerate(["a", "a", None, "b", None])]
    (tmp_path / "s").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s" / "part-0.parquet")
    result = invoke("best-of-n", tmp_path / "s", "--label-column", "right")
    assert result.exit_code == 2, result.output
    assert "2 scored, labelled rows" in result.output and "no prompt_id" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 2  # message + fix
