import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmscore.config import ColumnMap
from rmscore.distributed.env import DistInfo
from rmscore.errors import InputError
from rmscore.read.contract import Reading, reading_of
from rmscore.read.layout import row_samples
from rmscore.read.sources import open_source
from rmscore.score.records import prompt_hash
from rmscore.score.run import iter_samples
from rmscore.score.summary import RunSummary

ROWS = [
    {"prompt": "What is 2+2?", "completion": "4", "id": 7, "topic": "math"},
    {"prompt": [{"role": "user", "content": "Hi"}], "completion": {"role": "assistant", "content": "Hello"},
     "id": 8, "topic": "chat"},
]


def samples_of(path, cmap=None, keep=(), **kw):
    """The samples of an input, and its rows counted by shape."""
    source = open_source(str(path), **kw)
    reading = reading_of(source, cmap or ColumnMap(), list(keep))
    summary = RunSummary("x")
    return list(iter_samples(source, reading, DistInfo(), None, summary)), summary.shapes


def test_prompt_completion_text_and_messages(write_jsonl):
    samples, layout = samples_of(write_jsonl(ROWS), keep=["topic"])
    assert layout == {"completion": 2}
    first, second = samples
    assert first.prompt == [{"role": "user", "content": "What is 2+2?"}] and first.prompt_is_text
    assert first.completion == "4" and first.extra == {"topic": "math"}
    assert second.prompt == [{"role": "user", "content": "Hi"}] and not second.prompt_is_text
    assert second.completion == "Hello"
    # The same prompt gives the same id whether it came as text or as one user message.
    assert first.prompt_id == prompt_hash([{"role": "user", "content": "What is 2+2?"}])


def test_id_column_overrides_hash(write_jsonl):
    samples, _ = samples_of(write_jsonl(ROWS), ColumnMap(id="id"))
    assert [s.prompt_id for s in samples] == ["7", "8"]


def test_completions_list_one_row_each(write_jsonl):
    samples, layout = samples_of(write_jsonl([{"prompt": "p", "completions": ["a", "b", None]}]))
    assert layout == {"completions": 1}
    assert [(s.completion_index, s.completion) for s in samples] == [(0, "a"), (1, "b"), (2, None)]
    assert samples[2].error and "null" in samples[2].error
    assert len({s.prompt_id for s in samples}) == 1


def test_messages_shape(write_jsonl):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}]
    bad = [{"role": "user", "content": "Hi"}]
    samples, layout = samples_of(write_jsonl([{"messages": conv}, {"messages": bad}]))
    assert layout == {"messages": 2}
    assert samples[0].prompt == conv[:2] and samples[0].completion == "Hello"
    assert samples[1].error and "assistant" in samples[1].error


def test_pairs_with_prompt_and_implicit(write_jsonl):
    explicit = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    samples, layout = samples_of(write_jsonl([explicit]))
    assert layout == {"pairs": 1}
    assert [(s.side, s.completion, s.completion_index) for s in samples] == [("chosen", "good", 0), ("rejected", "bad", 1)]
    user = {"role": "user", "content": "q"}
    implicit = {"chosen": [user, {"role": "assistant", "content": "good"}],
                "rejected": [user, {"role": "assistant", "content": "bad"}]}
    samples, _ = samples_of(write_jsonl([implicit], "implicit.jsonl"))
    assert samples[0].prompt == [user] and [s.completion for s in samples] == ["good", "bad"]


def test_column_overrides(write_jsonl):
    rows = [{"question": "q", "answer": "a"}]
    samples, _ = samples_of(write_jsonl(rows), ColumnMap(prompt="question", completion="answer"))
    assert samples[0].completion == "a"
    with pytest.raises(InputError, match="not found"):
        samples_of(write_jsonl(rows), ColumnMap(prompt="nope"))


def test_unknown_layout_names_the_options(write_jsonl):
    with pytest.raises(InputError) as info:
        samples_of(write_jsonl([{"question": "q", "answer": "a"}]))
    assert "question, answer" in info.value.message and "--prompt-col" in info.value.hint


def test_bad_lines_are_rows_not_crashes(write_jsonl):
    samples, _ = samples_of(write_jsonl([ROWS[0], "{not json", "[1, 2]", {"prompt": None, "completion": "x"}]))
    assert [s.input_index for s in samples] == [0, 1, 2, 3]
    assert samples[0].error is None
    assert "not valid JSON" in samples[1].error and "not a JSON object" in samples[2].error
    assert "prompt" in samples[3].error


def test_formats_round_trip(tmp_path, write_jsonl):
    expected, _ = samples_of(write_jsonl(ROWS))
    gz = tmp_path / "rows.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in ROWS)
    table = pa.Table.from_pylist([{"prompt": r["prompt"] if isinstance(r["prompt"], str) else "Hi",
                                   "completion": "4"} for r in ROWS])
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(table.slice(0, 1), folder / "a.parquet")
    pq.write_table(table.slice(1), folder / "b.parquet")
    got_gz, _ = samples_of(gz)
    got_folder, _ = samples_of(folder)
    got_file, _ = samples_of(folder / "a.parquet")
    assert [(s.prompt, s.completion) for s in got_gz] == [(s.prompt, s.completion) for s in expected]
    assert [s.input_index for s in got_folder] == [0, 1]  # files in sorted order, one index space
    assert got_file[0].completion == "4"


def test_save_to_disk_and_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_list([{"prompt": "p", "completion": "c"}, {"prompt": "q", "completion": "d"}])
    ds.save_to_disk(str(tmp_path / "flat"))
    DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dict"))
    assert [s.completion for s in samples_of(tmp_path / "flat")[0]] == ["c", "d"]
    assert len(samples_of(tmp_path / "dict", split="test")[0]) == 2
    with pytest.raises(InputError, match="no split"):
        samples_of(tmp_path / "dict", split="train")


def test_unreadable_inputs_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_source(str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty"):
        open_source(str(tmp_path / "empty.jsonl"))
    (tmp_path / "data.xlsx").write_text("a,b\n")
    with pytest.raises(InputError, match="format"):
        open_source(str(tmp_path / "data.xlsx"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="Parquet"):
        open_source(str(tmp_path / "broken.parquet"))


def test_expand_never_raises_on_odd_values():
    from rmscore.read.rows import RawRow

    for value in (3, [], [{"role": 1}], {"content": "x", "role": "user"}, [{"role": "assistant", "content": None}]):
        _, (sample,) = row_samples(RawRow(0, {"prompt": "p", "completion": value}), Reading())
        assert sample.error, value


def test_streaming_memory_is_bounded(tmp_path):
    """200k rows flow through reader + window in a few MB, not in proportion to the file."""
    import tracemalloc

    from rmscore.score.batching import chunked

    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({"prompt": f"question {i} " * 5, "completion": f"answer {i} " * 20}) + "\n")
    source = open_source(str(path))
    reading = reading_of(source, ColumnMap())
    tracemalloc.start()
    count = 0
    for window in chunked(iter_samples(source, reading, DistInfo(), None, RunSummary("x")), 2048):
        count += len(window)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 200_000
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {path.stat().st_size / 2**20:.0f} MiB file"


def test_hub_dataset_is_streamed_with_split_and_config(monkeypatch):
    """A Hub name goes to datasets.load_dataset(name, config, split=..., streaming=True); offline,
    a local IterableDataset stands in for the Hub."""
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        rows = [{"prompt": "p", "completions": ["a", "b"]}, {"prompt": "q", "completions": ["c"]}]
        return datasets.IterableDataset.from_generator(lambda: iter(rows))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples, layout = samples_of("org/preference-data", split="test", config_name="default")
    assert calls[0] == ("org/preference-data", "default", "test", True)
    assert layout == {"completions": 2} and [s.completion for s in samples] == ["a", "b", "c"]


def test_hub_dataset_that_cannot_load_is_one_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/missing' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError) as info:
        open_source("org/missing")
    assert "org/missing" in info.value.message and "\n" not in info.value.message and "--split" in info.value.hint
