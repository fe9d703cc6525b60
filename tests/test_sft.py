"""`rmscore build-sft`: hand-checked selections, a pandas reference on the demo's real scores (with
ties and failed rows put in), the random baseline, and TRL's SFTTrainer on the output."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import scored_data as sd
from cli_runner import invoke, run
from test_cli import one_line_error
from test_pairs_cli import causal_lm, gsm8k_scored  # noqa: F401 (fixtures)


def build(*args):
    return run("build-sft", *args)


def rows_of(path):
    return pq.read_table(path).to_pylist()


def report_of(path):
    return json.loads(Path(path).with_suffix(".report.json").read_text())


def answers(rows):
    """(prompt_id, answer text) of each output row, in order, whatever the format."""
    return [(r["prompt_id"], (r["messages"] if "messages" in r else r["completion"])[-1]["content"]) for r in rows]


@pytest.fixture
def scored(tmp_path):
    """Five prompts over two shard files. a: a tie for best (3.0 twice) and a row in the second file;
    b: one completion; c: a failed row; d: nothing usable; e: a conversation."""
    folder = tmp_path / "scored"
    sd.write(folder / "part-00000-of-00002-00000.parquet",
             sd.rows("a", [1.0, 3.0, 3.0, 2.0]) + sd.rows("b", [0.5], input_index=1)
             + sd.rows("c", [None, 2.0], statuses=["too_long", "ok"], input_index=2)
             + sd.rows("d", [None], statuses=["error"], input_index=3))
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    sd.write(folder / "part-00001-of-00002-00000.parquet",
             sd.rows("a", [2.5], texts=["late answer"], input_index=4)
             + sd.rows("e", [0.1, 0.9, -1.0], input_index=5, prompt=chat))
    return folder


def test_best_per_prompt_ties_go_to_input_order(scored, tmp_path):
    out = tmp_path / "sft.parquet"
    build(scored, "-o", out)
    got = rows_of(out)
    assert answers(got) == [("a", "answer a-1"), ("b", "answer b-0"), ("c", "answer c-1"), ("e", "answer e-1")]
    assert [r["score"] for r in got] == [3.0, 0.5, 2.0, 0.9]
    assert got[0]["messages"] == [{"role": "user", "content": "question a"}, {"role": "assistant", "content": "answer a-1"}]
    assert got[3]["messages"][:2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    report = report_of(out)
    assert report["rows"] == 4
    assert report["prompts"] == {"in": 5, "kept": 4, "dropped": {"no_usable": 1, "not_in_top": 0, "below_min_score": 0}}
    assert report["completions"] == {"in": 12, "usable": 10, "bad_status": 2, "not_selected": 6, "below_min_score": 0,
                                     "kept": 4, "bad_status_by_status": {"error": 1, "too_long": 1}}
    meta = json.loads(pq.read_schema(out).metadata[b"rmscore"])
    assert meta["kind"] == "sft" and meta["build_sft"]["per_prompt"] == 1 and meta["model"] == "tiny-rm"
    one_line_error(invoke("inspect", out, "-o", tmp_path / "look"), "inspect does not read")


def test_k_per_prompt_and_min_score(scored, tmp_path):
    out = tmp_path / "sft.parquet"
    build(scored, "-o", out, "--per-prompt", 3, "--min-score", 1.0, "--format", "prompt-completion")
    got = rows_of(out)
    # a: 3.0 (a-1), 3.0 (a-2), then 2.5 (the second file's row) beats 2.0; b and e are under 1.0
    assert answers(got) == [("a", "answer a-1"), ("a", "answer a-2"), ("a", "late answer"), ("c", "answer c-1")]
    assert got[0]["prompt"] == [{"role": "user", "content": "question a"}]
    assert got[0]["completion"] == [{"role": "assistant", "content": "answer a-1"}]
    report = report_of(out)
    assert report["prompts"]["dropped"] == {"no_usable": 1, "not_in_top": 0, "below_min_score": 2}
    assert report["completions"]["below_min_score"] == 4  # b's 0.5, e's 0.9, 0.1 and -1.0
    assert report["completions"]["not_selected"] == 2  # a's 2.0 and 1.0


def test_best_fraction_overall(scored, tmp_path):
    out = tmp_path / "sft.parquet"
    # 10 usable completions; 0.25 of them, rounded up, is 3: a's two 3.0s (input order) and 2.5
    build(scored, "-o", out, "--select", "overall", "--top-fraction", 0.25)
    assert answers(rows_of(out)) == [("a", "answer a-1"), ("a", "answer a-2"), ("a", "late answer")]
    report = report_of(out)
    assert report["prompts"]["dropped"] == {"no_usable": 1, "not_in_top": 3, "below_min_score": 0}
    build(scored, "-o", out, "--select", "overall", "--top-fraction", 0.35, "--overwrite")  # 4: the tie at 2.0
    assert answers(rows_of(out)) == [("a", "answer a-1"), ("a", "answer a-2"), ("a", "late answer"),
                                     ("a", "answer a-3")]  # a-3 (key 0,3) comes before c-1 (key 2,1)


def test_baseline_has_the_same_size(scored, tmp_path):
    out, base = tmp_path / "sft.parquet", tmp_path / "random.parquet"
    build(scored, "-o", out, "--per-prompt", 2, "--baseline-out", base)
    kept, drawn = rows_of(out), rows_of(base)
    per_prompt = lambda rows: {p: sum(r["prompt_id"] == p for r in rows) for p in "abcde"}  # noqa: E731
    assert per_prompt(drawn) == per_prompt(kept) == {"a": 2, "b": 1, "c": 1, "d": 0, "e": 2}
    usable = {("a", f"answer a-{j}") for j in range(4)} | {("a", "late answer"), ("b", "answer b-0"),
                                                           ("c", "answer c-1")} | {("e", f"answer e-{j}") for j in range(3)}
    assert set(answers(drawn)) <= usable
    assert report_of(out)["baseline"] == {"output": str(base), "rows": 6}
    build(scored, "-o", out, "--per-prompt", 2, "--baseline-out", base, "--overwrite", "--buckets", 3)
    assert rows_of(base) == drawn  # seeded by prompt: the same draw however the rows are bucketed
    seeds = set()
    for seed in range(8):
        build(scored, "-o", out, "--per-prompt", 2, "--baseline-out", base, "--overwrite", "--seed", seed)
        seeds.add(tuple(answers(rows_of(base))))
    assert len(seeds) > 1


def test_overall_baseline_has_the_same_total(scored, tmp_path):
    out, base = tmp_path / "sft.parquet", tmp_path / "random.parquet"
    for seed in (0, 1, 2):
        build(scored, "-o", out, "--select", "overall", "--top-fraction", 0.5, "--baseline-out", base, "--seed", seed,
              "--overwrite")
        assert len(rows_of(out)) == 5 and len(rows_of(base)) == 5
        assert len(set(answers(rows_of(base)))) == 5


def test_refusals_are_one_line(scored, tmp_path):
    out = tmp_path / "sft.parquet"
    one_line_error(invoke("build-sft", scored, "-o", out, "--top-fraction", 0.1), "--select overall")
    one_line_error(invoke("build-sft", scored, "-o", out, "--select", "overall"), "--top-fraction")
    one_line_error(invoke("build-sft", scored, "-o", out, "--select", "overall", "--top-fraction", 0.1,
                          "--per-prompt", 2), "--per-prompt")
    one_line_error(invoke("build-sft", scored, "-o", out, "--score-column", "nope"), "'nope' does not exist")
    build(scored, "-o", out)
    one_line_error(invoke("build-sft", scored, "-o", out), "already exists", "--overwrite")
    one_line_error(invoke("build-sft", scored, "-o", tmp_path / "b.parquet", "--baseline-out", tmp_path / "b.parquet"),
                   "same file")


# --- a pandas reference on real scores ------------------------------------------------------------

def roughened(scored: Path, folder: Path, fail_every: int = 7, fail_at: int = 3) -> Path:
    """The demo's real scores rounded to one decimal (many ties), one row in `fail_every` failed, and
    the second completion of every 5th prompt removed (prompts with one completion); the folder's
    .rmscore records come along."""
    part = sorted(scored.glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        row["score"] = round(row["score"], 1)
        if i % fail_every == fail_at:
            row["status"], row["score"] = "error", None
    rows = [r for r in rows if not (r["input_index"] % 5 == 0 and r["completion_index"] == 1)]
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), folder / part.name)
    if (scored / ".rmscore").is_dir():
        shutil.copytree(scored / ".rmscore", folder / ".rmscore")
    return folder


def reference(scored: Path, per_prompt=None, fraction=None, min_score=None) -> list[tuple]:
    df = pd.read_parquet(scored, columns=["prompt_id", "input_index", "completion_index", "completion", "score",
                                          "status"])
    first = df.groupby("prompt_id")[["input_index", "completion_index"]].min().apply(tuple, axis=1)
    ok = df[df.status.isin(["ok", "truncated"]) & df.score.notna()].copy()
    ok["neg"] = -ok.score
    ok = ok.sort_values(["neg", "input_index", "completion_index"])
    kept = ok.groupby("prompt_id").head(per_prompt) if per_prompt else ok.head(math.ceil(fraction * len(ok)))
    if min_score is not None:
        kept = kept[kept.score >= min_score]
    kept = kept.assign(first=kept.prompt_id.map(first), rank=kept.groupby("prompt_id").cumcount())
    kept = kept.sort_values(["first", "rank"])
    return list(zip(kept.prompt_id, kept.completion, kept.score))


@pytest.mark.parametrize("args, expect", [
    ((), dict(per_prompt=1)),
    (("--per-prompt", 2, "--min-score", 0.0), dict(per_prompt=2, min_score=0.0)),
    (("--select", "overall", "--top-fraction", 0.3), dict(fraction=0.3)),
    (("--select", "overall", "--top-fraction", 0.1, "--min-score", 1.5), dict(fraction=0.1, min_score=1.5)),
])
def test_demo_scores_match_pandas(made_demo, tmp_path, args, expect):
    root, _ = made_demo
    scored = roughened(root / "demo-out" / "scored", tmp_path / "rough")
    for buckets in (1, 4):
        out = tmp_path / f"sft-{buckets}.parquet"
        build(scored, "-o", out, "--buckets", buckets, *args)
        got = [(r["prompt_id"], r["messages"][-1]["content"], r["score"]) for r in rows_of(out)]
        assert got == reference(scored, **expect)
    assert len(got) > 10


@pytest.mark.parametrize("args, expect", [
    (("--per-prompt", 2), dict(per_prompt=2)),
    (("--select", "overall", "--top-fraction", 0.25), dict(fraction=0.25)),
])
def test_gsm8k_scores_match_pandas(gsm8k_scored, tmp_path, args, expect):  # noqa: F811
    """60 GSM8K questions x 4 real solutions, scored by a tiny reward model."""
    out = tmp_path / "sft.parquet"
    build(gsm8k_scored, "-o", out, *args)
    got = [(r["prompt_id"], r["messages"][-1]["content"], r["score"]) for r in rows_of(out)]
    assert got == reference(gsm8k_scored, **expect) and len(got) > 10


def test_trl_sft_trainer_takes_both_formats(made_demo, causal_lm, tmp_path):  # noqa: F811
    trl = pytest.importorskip("trl")
    from datasets import load_dataset

    root, _ = made_demo
    model, tok = causal_lm
    for fmt in ("conversational", "prompt-completion"):
        out = tmp_path / f"{fmt}.parquet"
        build(root / "demo-out" / "scored", "-o", out, "--format", fmt, "--select", "overall", "--top-fraction", 0.02)
        data = load_dataset("parquet", data_files=str(out), split="train")
        assert len(data) == 8
        args = trl.SFTConfig(output_dir=str(tmp_path / fmt), report_to=[], max_steps=1, use_cpu=True,
                             per_device_train_batch_size=2, max_length=128, dataset_num_proc=None)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
        first = trainer.train_dataset[0]
        assert len(first["input_ids"]) == len(first["labels"]) > 0
        # prompt-completion: TRL masks the prompt out of the loss; messages: the whole conversation counts
        assert (-100 in first["labels"]) == (fmt == "prompt-completion")
        trainer.train()
        assert trainer.state.global_step == 1
