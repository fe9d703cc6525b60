"""`rmscore build-pairs --format kto`: TRL's unpaired preference rows, checked by hand, against the
pairs of the same run, and by TRL's KTOTrainer for one step."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import scored_data as sd
from cli_runner import invoke, run
from test_cli import one_line_error
from test_pairs_cli import causal_lm  # noqa: F401 (a fixture)


@pytest.fixture
def scored(tmp_path):
    """a: four completions; b: a tie; c: one usable completion."""
    folder = tmp_path / "scored"
    sd.write(folder / "part-00000-of-00001-00000.parquet",
             sd.rows("a", [1.0, 4.0, 2.0, 3.0]) + sd.rows("b", [1.0, 1.0], input_index=1)
             + sd.rows("c", [None, 2.0], statuses=["error", "ok"], input_index=2))
    return folder


def kto(scored, out, *args):
    run("build-pairs", scored, "-o", out, "--format", "kto", *args)
    return [(r["prompt_id"], r["completion"][0]["content"], r["label"], r["score"])
            for r in pq.read_table(out).to_pylist()]


def test_max_min_gives_a_true_and_a_false_row(scored, tmp_path):
    out = tmp_path / "kto.parquet"
    assert kto(scored, out) == [("a", "answer a-1", True, 4.0), ("a", "answer a-0", False, 1.0)]
    first = pq.read_table(out).to_pylist()[0]
    assert first["prompt"] == [{"role": "user", "content": "question a"}]
    assert first["completion"] == [{"role": "assistant", "content": "answer a-1"}] and first["margin"] == 3.0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["pairs"] == 1 and report["rows"] == 2 and report["settings"]["format"] == "kto"
    assert report["prompts"]["dropped"]["ties"] == 1 and report["prompts"]["dropped"]["bad_status"] == 1
    meta = json.loads(pq.read_schema(out).metadata[b"rmscore"])
    assert meta["kind"] == "pairs" and meta["build_pairs"]["format"] == "kto"
    one_line_error(invoke("inspect", out, "-o", tmp_path / "look"), "inspect does not read")


def test_best_vs_rest_gives_the_best_once(scored, tmp_path):
    got = kto(scored, tmp_path / "kto.parquet", "--rule", "best-vs-rest")
    assert got == [("a", "answer a-1", True, 4.0), ("a", "answer a-0", False, 1.0),
                   ("a", "answer a-2", False, 2.0), ("a", "answer a-3", False, 3.0)]
    report = json.loads((tmp_path / "kto.report.json").read_text())
    assert report["pairs"] == 3 and report["rows"] == 4


def test_rows_follow_the_pairs_of_the_same_settings(scored, tmp_path):
    for rule in ("max-min", "best-vs-rest", "all-pairs"):
        run("build-pairs", scored, "-o", tmp_path / f"{rule}.parquet", "--rule", rule, "--format", "conversational")
        pairs = pq.read_table(tmp_path / f"{rule}.parquet").to_pylist()
        want = {(p["prompt_id"], p[side][0]["content"], side == "chosen") for p in pairs for side in ("chosen", "rejected")}
        got = kto(scored, tmp_path / f"{rule}-kto.parquet", "--rule", rule)
        assert {g[:3] for g in got} == want and len(got) == len(want)


def test_trl_kto_trainer_takes_it(made_demo, causal_lm, tmp_path):  # noqa: F811
    trl = pytest.importorskip("trl")
    from datasets import load_dataset

    root, _ = made_demo
    out = tmp_path / "kto.parquet"
    run("build-pairs", root / "demo-out" / "scored", "-o", out, "--format", "kto", "--min-margin", 2.5)
    data = load_dataset("parquet", data_files=str(out), split="train")
    assert len(data) == json.loads(out.with_suffix(".report.json").read_text())["rows"] >= 4
    assert sum(data["label"]) == len(data) // 2
    model, tok = causal_lm
    args = trl.KTOConfig(output_dir=str(tmp_path / "kto"), report_to=[], max_steps=1, use_cpu=True,
                         per_device_train_batch_size=4, max_length=128, dataset_num_proc=None)
    trainer = trl.KTOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
