"""`rmscore combine`: hand-checked combinations of two models' scored folders, a pandas reference on
two real scorings of the demo data, the refusals, and what build-pairs and inspect do with it."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import scored_data as sd
from cli_runner import invoke, run
from rmscore.ensemble.methods import pair_agreement
from test_cli import one_line_error
from test_sft import roughened

STAMP = [["/data/in.jsonl", 1234, 1, "0123456789abcdef"]]


def folder_of(path: Path, rows: list[dict], model: str, stamp=STAMP, keep=()) -> Path:
    """A scored folder with the manifest rmscore score writes (the parts of it combine reads)."""
    sd.write(path / "part-00000-of-00001-00000.parquet", rows, model=model, extra_fields=keep)
    settings = {"input": "/data/in.jsonl", "split": "train", "config": None, "columns": {"prompt": None},
                "keep_columns": [f.name for f in keep]}
    (path / ".rmscore").mkdir()
    (path / ".rmscore" / "manifest-00000-of-00001.json").write_text(
        json.dumps({"settings": settings, "parts": [], "input_stamp": {"files": stamp}}))
    (path / ".rmscore" / "done-00000-of-00001.json").write_text(json.dumps({"rows": len(rows)}))
    return path


def two_models(tmp_path, b_rows=None, stamp=STAMP):
    """p: 3 completions the models order differently; q: a tie for A; r: B failed one row; s: one completion."""
    a = (sd.rows("p", [1.0, 2.0, 3.0]) + sd.rows("q", [5.0, 5.0], input_index=1)
         + sd.rows("r", [0.0, 1.0], input_index=2) + sd.rows("s", [2.0], input_index=3))
    b = (sd.rows("p", [30.0, 10.0, 20.0]) + sd.rows("q", [1.0, 2.0], input_index=1)
         + sd.rows("r", [None, 4.0], statuses=["too_long", "ok"], input_index=2) + sd.rows("s", [2.0], input_index=3))
    b[5]["status_detail"] = "1,234 tokens > 1,024"
    return (folder_of(tmp_path / "a", a, "rm-a"), folder_of(tmp_path / "b", b_rows or b, "rm-b", stamp))


def combined(path):
    rows = sorted(pq.read_table(sorted(Path(path).glob("part-*.parquet"))[0]).to_pylist()
                  if len(list(Path(path).glob("part-*.parquet"))) == 1
                  else pd.read_parquet(path).to_dict("records"), key=lambda r: (r["input_index"], r["completion_index"]))
    return rows


def scores(rows):
    return [None if r["score"] is None or (isinstance(r["score"], float) and math.isnan(r["score"]))
            else round(r["score"], 9) for r in rows]


@pytest.mark.parametrize("method, expect", [
    ("mean", [15.5, 6.0, 11.5, 3.0, 3.5, None, 2.5, 2.0]),
    ("min", [1.0, 2.0, 3.0, 1.0, 2.0, None, 1.0, 2.0]),
    # p: A's best is the third, B's the first; q: A's tie goes to input order, B picks the second;
    # r: only the second is scored by both; s: one completion
    ("vote", [0.5, 0.0, 0.5, 0.5, 0.5, None, 1.0, 1.0]),
])
def test_methods_by_hand(tmp_path, method, expect):
    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", method)
    rows = combined(tmp_path / "ens")
    assert scores(rows) == expect
    assert rows[0]["model_scores"] == [1.0, 30.0] and rows[5]["model_scores"] == [0.0, None]
    assert [r["status"] for r in rows] == ["ok"] * 5 + ["too_long"] + ["ok"] * 2
    assert rows[5]["status_detail"] == "rm-b: 1,234 tokens > 1,024"
    meta = json.loads(pq.read_schema(sorted((tmp_path / "ens").glob("part-*.parquet"))[0]).metadata[b"rmscore"])
    assert meta["kind"] == "combined" and meta["models"] == ["rm-a", "rm-b"] and meta["combine"]["method"] == method


def test_mean_z_by_hand(tmp_path):
    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens")
    za = np.array([1, 2, 3, 5, 5, 0, 1, 2.0])  # A's usable rows: all eight
    zb = np.array([30, 10, 20, 1, 2, 4, 2.0])  # B's: all but r's first
    za, zb = (za - za.mean()) / za.std(), (zb - zb.mean()) / zb.std()
    zb = np.insert(zb, 5, np.nan)
    want = [None if math.isnan(x) else round(x, 9) for x in (za + zb) / 2]
    assert scores(combined(tmp_path / "ens")) == want
    provenance = json.loads((tmp_path / "ens" / ".rmscore" / "combine.json").read_text())
    assert provenance["rows"] == 8 and provenance["usable"] == 7
    assert provenance["combine"]["standardised_by"][1]["rows"] == 7


def test_pairs_carry_agreement_and_min_agreement_drops(tmp_path):
    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", "mean")
    run("build-pairs", tmp_path / "ens", "-o", tmp_path / "pairs.parquet")
    pairs = pq.read_table(tmp_path / "pairs.parquet").to_pylist()
    # p: 15.5 over 6.0, A prefers the rejected (1 < 2), B the chosen; q: 3.5 over 3.0, A ties, B prefers chosen
    assert [(p["prompt_id"], p["agreement"]) for p in pairs] == [("p", 0.5), ("q", 0.5)]
    result = run("build-pairs", tmp_path / "ens", "-o", tmp_path / "agreed.parquet", "--min-agreement", 1)
    assert "disagreement" in result.output
    report = json.loads((tmp_path / "agreed.report.json").read_text())
    assert report["pairs"] == 0 and report["prompts"]["dropped"]["disagreement"] == 2
    assert report["candidate_pairs"]["disagreement"] == 2
    run("build-pairs", tmp_path / "ens", "-o", tmp_path / "half.parquet", "--min-agreement", 0.5)
    assert pq.read_table(tmp_path / "half.parquet").num_rows == 2
    one_line_error(invoke("build-pairs", a, "-o", tmp_path / "x.parquet", "--min-agreement", 1), "rmscore combine")


def test_sft_and_inspect_read_it(tmp_path):
    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", "vote")
    run("build-sft", tmp_path / "ens", "-o", tmp_path / "sft.parquet")
    assert [r["score"] for r in pq.read_table(tmp_path / "sft.parquet").to_pylist()] == [0.5, 0.5, 1.0, 1.0]
    result = run("inspect", tmp_path / "ens", "-o", tmp_path / "look", "--no-text")
    report = json.loads((tmp_path / "look" / "inspect.json").read_text())["agreement"]
    # within-prompt pairs scored by both: p's 3, q's 1 (r and s have one such row)
    assert report["all"] == {"pairs": 4, "pairs_all_agree": 0.25, "prompts": 2, "top_all_agree": 0.0}
    assert report["by_pair"][0]["same_order"] == 0.25
    assert "same order on 25.0% of 4 completion pairs" in result.output


def test_kept_columns_come_along_for_best_of_n(tmp_path):
    import pyarrow as pa

    keep = [pa.field("is_correct", pa.bool_())]
    right = [True, False, False, True]
    a = folder_of(tmp_path / "a", sd.rows("p", [3.0, 1.0], is_correct=right[:2])
                  + sd.rows("q", [1.0, 2.0], input_index=1, is_correct=right[2:]), "rm-a", keep=keep)
    b = folder_of(tmp_path / "b", sd.rows("p", [0.0, 1.0], is_correct=right[:2])
                  + sd.rows("q", [0.0, 5.0], input_index=1, is_correct=right[2:]), "rm-b", keep=keep)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", "mean")
    assert [r["is_correct"] for r in combined(tmp_path / "ens")] == right
    run("best-of-n", tmp_path / "ens", "--label-column", "is_correct", "--n", 2, "-o", tmp_path / "bon")
    result = json.loads((tmp_path / "bon" / "bestofn.json").read_text())
    # p: mean 1.5 over 1.0 picks the correct one; q: 3.5 over 0.5 picks the correct one
    assert result["model"] == "mean of 2 reward models: rm-a + rm-b" and result["accuracy"]["reward_model"] == [1.0]


def test_refusals(tmp_path):
    a, b = two_models(tmp_path / "1")
    _, other = two_models(tmp_path / "2", stamp=[["/data/in.jsonl", 999, 1, "0123456789abcdef"]])
    one_line_error(invoke("combine", a, other, "-o", tmp_path / "e"), "different inputs", "in.jsonl 1,234 bytes vs 999")
    short = folder_of(tmp_path / "short", sd.rows("p", [1.0, 2.0, 3.0]), "rm-c")
    one_line_error(invoke("combine", a, short, "-o", tmp_path / "e"), "different rows")
    sd.write(tmp_path / "bare" / "part-00000-of-00001-00000.parquet", sd.rows("p", [1.0]))
    one_line_error(invoke("combine", a, tmp_path / "bare", "-o", tmp_path / "e"), "no rmscore manifest")
    one_line_error(invoke("combine", a, "-o", tmp_path / "e"), "at least two")
    unfinished = folder_of(tmp_path / "unfinished", sd.rows("p", [1.0, 2.0, 3.0]), "rm-d")
    (unfinished / ".rmscore" / "done-00000-of-00001.json").unlink()
    one_line_error(invoke("combine", a, unfinished, "-o", tmp_path / "e"), "have not finished")
    one_line_error(invoke("combine", a, b, "-o", tmp_path / "e", "--method", "median"), "--method")
    run("combine", a, b, "-o", tmp_path / "e")
    one_line_error(invoke("combine", a, b, "-o", tmp_path / "e"), "--overwrite")
    run("combine", a, b, "-o", tmp_path / "e", "--overwrite", "--method", "min")
    one_line_error(invoke("combine", a, b, "-o", a, "--overwrite"), "one of the inputs")
    one_line_error(invoke("combine", a, b, "-o", tmp_path / "1", "--overwrite"), "not a folder written by")
    (tmp_path / "e" / ".rmscore" / "manifest-00000-of-00001.json").write_text(
        (a / ".rmscore" / "manifest-00000-of-00001.json").read_text())
    one_line_error(invoke("combine", tmp_path / "e", b, "-o", tmp_path / "f"), "already the output of rmscore combine")


def test_pair_agreement_by_hand():
    s = np.array([[1, 10], [2, 30], [3, 20], [5, 1], [5, 2.0]])
    g = np.array([0, 0, 0, 1, 1])
    # group 0: (0,1) both up; (0,2) both up; (1,2) A up, B down; group 1: A ties
    assert pair_agreement(s, g) == {"pairs": 4, "pairs_all_agree": 0.5, "prompts": 2, "top_all_agree": 0.0}


# --- a pandas reference on two real scorings of the demo data ---------------------------------------

@pytest.fixture(scope="module")
def demo_pair(made_demo, tmp_path_factory):
    """The demo data scored twice by the demo model: as make demo does, and reading at most 96 tokens
    (truncate-left: 60% of rows truncated, so the scores differ); both roughened as in test_sft
    (ties, failed rows, other ones in each, prompts with one completion)."""
    root, _ = made_demo
    work = tmp_path_factory.mktemp("second")
    run("score", root / "data" / "demo" / "hh_rlhf_demo.jsonl", "-o", work / "scored-96", "--max-length", 96,
        "--on-overflow", "truncate-left")
    return (roughened(root / "demo-out" / "scored", work / "a", 7, 3),
            roughened(work / "scored-96", work / "b", 5, 2))


def reference(first: Path, second: Path, method: str) -> pd.Series:
    keys = ["input_index", "completion_index"]
    a, b = (pd.read_parquet(f, columns=[*keys, "prompt_id", "score", "status"]).set_index(keys).sort_index()
            for f in (first, second))
    ok = lambda d: d.status.isin(["ok", "truncated"]) & d.score.notna()  # noqa: E731
    both = ok(a) & ok(b)
    sa, sb = a.score.where(both), b.score.where(both)
    if method == "mean-z":
        za = (a.score - a.score[ok(a)].mean()) / a.score[ok(a)].std(ddof=0)
        zb = (b.score - b.score[ok(b)].mean()) / b.score[ok(b)].std(ddof=0)
        return ((za + zb) / 2).where(both)
    if method in ("mean", "min"):
        return getattr(pd.concat([sa, sb], axis=1), method)(axis=1, skipna=False)
    votes = pd.Series(0.0, index=a.index)
    for s in (sa, sb):
        frame = s.rename("s").to_frame().assign(prompt=a.prompt_id).dropna().reset_index()
        top = frame.sort_values(["prompt", "s", *keys], ascending=[True, False, True, True]).groupby("prompt").head(1)
        votes[list(zip(top.input_index, top.completion_index))] += 0.5
    return votes.where(both)


@pytest.mark.parametrize("method", ["mean-z", "mean", "min", "vote"])
def test_demo_scorings_match_pandas(demo_pair, tmp_path, method):
    first, second = demo_pair
    run("combine", first, second, "-o", tmp_path / "ens", "--method", method, "--buckets", 3)
    got = pd.read_parquet(tmp_path / "ens").set_index(["input_index", "completion_index"]).sort_index()
    want = reference(first, second, method)
    assert len(got) == 360 and got.score.notna().sum() == want.notna().sum() == 240  # a failed row: no score
    np.testing.assert_allclose(got.score.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)
    assert (got.status == "error").sum() == 360 - 240
    base = pd.read_parquet(first).set_index(["input_index", "completion_index"]).sort_index()
    assert (got.completion == base.completion).all() and (got.prompt_id == base.prompt_id).all()
