"""Kept columns (--keep-columns) and --id-col values of mixed type follow one promotion rule (null
fits anything, int -> float, anything else -> text), the same on every path: one window or many,
a resumed run, `rmscore merge` of shards that saw different types, and the scored-folder reader."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmscore.read import promote
from rmscore.store.scored import read_columns
from rmscore.score.records import prompt_hash, stable_bucket
from cli_runner import run

MIXED = [None, 1, 2.0, 2.5, "x", True, {"a": 1, "b": None}, [1, 2.0]]
AS_TEXT = [None, "1", "2", "2.5", "x", "true", '{"a": 1}', "[1, 2]"]  # the rule, worked by hand


def write(path, values, key="meta"):
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f"Answer {i}.", key: v}) + "\n"
                            for i, v in enumerate(values)))
    return path


def kept(out, column="meta"):
    """The column in input order, read as rmscore reads a folder whose parts kept different types
    (pyarrow.dataset.dataset(folder) would take the first part's type for all)."""
    cols = read_columns(out, [column, "input_index"])
    return [v for _, v in sorted(zip(cols["input_index"], cols[column]), key=lambda pair: pair[0])]


def test_the_rule_by_hand():
    assert [promote.to_text(v) for v in MIXED] == AS_TEXT
    assert promote.values_type([None, 1, 2.5]) == pa.float64()
    assert promote.values_type([None, None]) == pa.null()
    assert promote.values_type([1, "a"]) == pa.string() and promote.values_type([True, 1]) == pa.string()
    assert promote.promote(pa.list_(pa.null()), pa.list_(pa.int64())) == pa.list_(pa.int64())


def test_int_then_float_keeps_the_float(tiny_models, tmp_path):
    """{"meta": 1} then {"meta": 2.5} in two windows: main stored 2 (cast to the first window's int)."""
    path = write(tmp_path / "in.jsonl", [1, 2.5])
    out = tmp_path / "out"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--window", 1,
        "--no-progress")
    assert {pq.read_schema(p).field("meta").type for p in out.glob("part-*")} == {pa.int64(), pa.float64()}
    assert kept(out) == [1.0, 2.5]
    run("merge", out, "-o", tmp_path / "merged.parquet")
    assert pq.read_table(tmp_path / "merged.parquet")["meta"].to_pylist() == [1.0, 2.5]


@pytest.mark.parametrize("values, want", [([None, None, 3], [None, None, 3]), ([1, "t0"], ["1", "t0"])],
                         ids=["null window then int", "int window then text"])
def test_a_later_window_of_another_type_does_not_crash(tiny_models, tmp_path, values, want):
    path = write(tmp_path / "in.jsonl", values)
    out = tmp_path / "out"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--window", 1,
        "--no-progress")
    run("merge", out, "-o", tmp_path / "merged.parquet")
    assert kept(out) == want == pq.read_table(tmp_path / "merged.parquet")["meta"].to_pylist()


def test_every_path_stores_the_same_values(tiny_models, tmp_path):
    path = write(tmp_path / "in.jsonl", MIXED)
    base = ("score", path, "-m", tiny_models["llama"], "--keep-columns", "meta", "--no-progress")
    run(*base, "-o", tmp_path / "one")  # one window: the column is text at once
    run(*base, "-o", tmp_path / "many", "--window", 1)  # one window per row: null, int, float, text parts
    run(*base, "-o", tmp_path / "resumed", "--window", 1, "--limit", 4)  # int/float parts, then resumed
    run(*base, "-o", tmp_path / "resumed", "--window", 1)
    assert kept(tmp_path / "one") == AS_TEXT
    for name in ("many", "resumed"):
        run("merge", tmp_path / name, "-o", tmp_path / f"{name}.parquet")
        assert pq.read_table(tmp_path / f"{name}.parquet")["meta"].to_pylist() == AS_TEXT, name
        assert kept(tmp_path / name) == AS_TEXT, name


def test_merge_of_shards_that_kept_different_types(tiny_models, tmp_path):
    """One shard saw only nulls, the other only ints: main's merge refused ("incompatible types")."""
    prompts = [f"Question {i}?" for i in range(12)]
    shard = [stable_bucket(prompt_hash([{"role": "user", "content": p}]), 2) for p in prompts]
    assert 0 < sum(shard) < len(shard)
    values = [None if s == 0 else i for i, s in enumerate(shard)]
    path = write(tmp_path / "in.jsonl", values)
    out = tmp_path / "out"
    for index in (0, 1):
        run("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--shard",
            f"{index}/2", "--no-progress")
    types = {pq.read_schema(p).field("meta").type for p in out.glob("part-*.parquet")}
    assert types == {pa.null(), pa.int64()}
    run("merge", out, "-o", tmp_path / "merged.parquet")
    assert pq.read_table(tmp_path / "merged.parquet")["meta"].to_pylist() == values


def test_id_col_values_of_mixed_type_follow_the_rule(tiny_models, tmp_path):
    """7, 7.0 and "7" are one prompt (main made "7.0" another); a kept id column of mixed type is text."""
    rows = [{"prompt": "Question?", "completion": f"Answer {i}.", "id": v} for i, v in enumerate([7, 7.0, "7", None])]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--id-col", "id", "--keep-columns", "id",
        "--window", 1, "--no-progress")
    run("merge", out, "-o", tmp_path / "merged.parquet")
    merged = pq.read_table(tmp_path / "merged.parquet")
    assert merged["prompt_id"].to_pylist() == ["7", "7", "7", prompt_hash([{"role": "user", "content": "Question?"}])]
    assert merged["id"].to_pylist() == ["7", "7", "7", None]
