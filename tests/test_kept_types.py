"""Kept columns (--keep-columns) and --id-col values of mixed type follow one promotion rule (null
fits anything, int -> float unless an int is beyond 2^53, anything else -> text), the same on every
path: one window or many, a resumed run, `rmscore merge` of shards that saw different types, and the
scored-folder reader. Every part of a finished folder has one schema on disk, so pyarrow.dataset,
pandas and datasets.load_dataset open it."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
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
    """The column in input order, read as rmscore reads a scored folder."""
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
    assert {pq.read_schema(p).field("meta").type for p in out.glob("part-*")} == {pa.float64()}
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
    assert types == {pa.int64()}  # the shard that saw only nulls was rewritten when the other finished
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


def one_schema(out):
    """Every part's columns, as one set: one schema on disk."""
    return {tuple(pq.read_schema(p).remove_metadata()) for p in out.glob("part-*.parquet")}


def read_every_way(out, tmp_path) -> list[pd.DataFrame]:
    """The folder as pyarrow.dataset, pandas and datasets read it (main: all three failed once a
    kept column widened mid-run), each sorted by row key."""
    import datasets

    tables = [ds.dataset(str(out)).to_table().to_pandas(), pd.read_parquet(out),
              datasets.load_dataset("parquet", data_dir=str(out), split="train",
                                    cache_dir=str(tmp_path / "hf-cache")).to_pandas()]
    return [t.sort_values(["input_index", "completion_index"]).reset_index(drop=True) for t in tables]


BIG = 2**53 + 1  # 9007199254740993: a float64 cannot hold it


@pytest.mark.parametrize("values, want", [
    ([1, 2.5, 3], [1.0, 2.5, 3.0]),
    ([1, "t1", None], ["1", "t1", None]),
    ([BIG, 2.5], [str(BIG), "2.5"]),  # main: score finished, merge crashed (outside the range of a double)
], ids=["int then float", "int then text", "int beyond 2^53 then float"])
@pytest.mark.parametrize("window", [1, 64], ids=["one window per row", "one window"])
def test_any_parquet_reader_opens_a_folder_whose_kept_type_widened(tiny_models, tmp_path, values, want, window):
    path = write(tmp_path / "in.jsonl", values)
    out = tmp_path / "out"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--window", window,
        "--no-progress")
    assert len(one_schema(out)) == 1
    for table in read_every_way(out, tmp_path):
        assert [None if pd.isna(v) else v for v in table["meta"]] == want
    run("merge", out, "-o", tmp_path / "merged.parquet")
    merged = pq.read_table(tmp_path / "merged.parquet")
    assert merged["meta"].to_pylist() == want == kept(out)
    assert {tuple(merged.schema.remove_metadata())} == one_schema(out)  # merge writes the folder's schema


def test_a_big_int_and_a_float_in_one_window_are_kept_exactly(tiny_models, tmp_path):
    """Main crashed (ArrowInvalid: Integer value 9007199254740993 is outside of the range exactly
    representable ...), saved nothing, and every rerun crashed again."""
    path = write(tmp_path / "in.jsonl", [2.5, BIG, -BIG, 7])
    out = tmp_path / "out"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--no-progress")
    assert kept(out) == ["2.5", str(BIG), str(-BIG), "7"]


def test_shards_and_a_resume_end_with_one_schema(tiny_models, tmp_path):
    """A resumed shard widens the column; the other shard, finished earlier with the narrow type, is
    rewritten before the folder is complete, and every reader agrees with pandas over the input."""
    prompts = [f"Question {i}?" for i in range(12)]
    shard = [stable_bucket(prompt_hash([{"role": "user", "content": p}]), 2) for p in prompts]
    values = [i if s == 0 or i < 6 else i + 0.5 for i, s in enumerate(shard)]  # shard 1 gains floats late
    path = write(tmp_path / "in.jsonl", values)
    out = tmp_path / "out"
    base = ("score", path, "-m", tiny_models["llama"], "-o", out, "--keep-columns", "meta", "--window", 2,
            "--no-progress")
    run(*base, "--shard", "0/2")
    run(*base, "--shard", "1/2", "--limit", 6)
    run(*base, "--shard", "1/2")
    assert len(one_schema(out)) == 1
    expected = pd.read_json(path, lines=True)["meta"].astype(float).tolist()
    for table in read_every_way(out, tmp_path):
        assert table["meta"].tolist() == expected
