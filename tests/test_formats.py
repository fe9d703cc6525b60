"""The input formats people have: JSON lines, a JSON array, JSON lines under a .json name, CSV and
TSV (message lists as JSON text, named with --json-columns), and the .gz of each, read as the same
rows, in bounded memory."""

import csv
import gzip
import io
import json
import tracemalloc

import pyarrow as pa
import pytest

from rmscore.config import ColumnMap
from rmscore.distributed.env import DistInfo
from rmscore.read.contract import reading_of
from rmscore.read.sources import open_source
from rmscore.score.run import iter_samples
from rmscore.score.summary import RunSummary

ROWS = [
    {"prompt": "What is 2+2?", "completion": "4", "id": "a"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi,\n\"there\""}],
     "completion": {"role": "assistant", "content": "Hello, you."}, "id": "b"},
    {"prompt": "[1, 2] is a list; {braces} too", "completion": '{"answer": 3}', "id": "c"},  # text, not JSON
]
JSON_COLUMNS = ["prompt", "completion"]  # how a CSV/TSV file holds these rows: every cell of them JSON


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def delimited(rows, delimiter, json_columns=JSON_COLUMNS) -> bytes:
    """CSV as csv.writer writes it (quoted where needed); TSV as IANA's type has it (no quoting:
    a line per row, split on tabs). The cells of json_columns are JSON, the others plain text."""
    cells = [[json.dumps(v) if k in json_columns else str(v) for k, v in row.items()] for row in rows]
    if delimiter == "\t":
        return "".join("\t".join(line) + "\n" for line in [list(rows[0]), *cells]).encode()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows([list(rows[0]), *cells])
    return buffer.getvalue().encode()


FORMATS = {
    "rows.jsonl": lambda rows: jsonl(rows),
    "lines.json": lambda rows: jsonl(rows),
    "array.json": lambda rows: json.dumps(rows, indent=1).encode(),
    "rows.csv": lambda rows: delimited(rows, ","),
    "rows.tsv": lambda rows: delimited(rows, "\t"),
}


def samples_of(path, json_columns=()):
    source = open_source(str(path))
    reading = reading_of(source, ColumnMap(id="id"), ["id"], json_columns)
    return [(s.input_index, s.prompt_id, s.prompt, s.prompt_is_text, s.completion, s.error)
            for s in iter_samples(source, reading, DistInfo(), None, RunSummary("x"))]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_reads_the_same_rows(tmp_path, name, gz):
    expected = samples_of(write(tmp_path / "reference.jsonl", jsonl(ROWS)))
    assert all(error is None for *_, error in expected)
    data = FORMATS[name](ROWS)
    path = write(tmp_path / (name + ".gz" if gz else name), gzip.compress(data) if gz else data)
    assert samples_of(path, JSON_COLUMNS if name.startswith("rows.") and "sv" in name else ()) == expected


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["array.json", "rows.csv"])
def test_json_arrays_and_csv_stream_in_bounded_memory(tmp_path, name):
    """Memory follows one element or row, not the file size."""
    rows = [{"prompt": f"question {i} " * 5, "completion": f"answer {i} " * 20, "id": str(i)} for i in range(9_000)]
    path = write(tmp_path / name, FORMATS[name](rows))
    source = open_source(str(path))
    reading = reading_of(source, ColumnMap())
    pool = pa.default_memory_pool()
    tracemalloc.start()
    before = pool.max_memory() or 0
    count = sum(1 for _ in iter_samples(source, reading, DistInfo(), None, RunSummary("x")))
    peak = tracemalloc.get_traced_memory()[1] + (pool.max_memory() or 0) - before
    tracemalloc.stop()
    assert count == len(rows)
    size = path.stat().st_size
    assert peak < size / 2.5, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"


def test_a_csv_field_longer_than_pythons_default_limit_is_read_whole(tmp_path):
    rows = [{"prompt": "short", "completion": "a"}, {"prompt": "long", "completion": "word,\n " * 40_000},
            {"prompt": "after", "completion": "b"}]
    source = open_source(str(write(tmp_path / "long.csv", delimited(rows, ",", ()))))
    assert [r.data for r in source.rows()] == rows and source.damage is None


def test_a_csv_quote_that_runs_past_the_field_bound_stops_at_its_line(tmp_path, monkeypatch):
    """A quote never closed in a large file must not read the rest of it into one field: past
    MAX_FIELD characters the reading stops, naming the line where the field began."""
    from rmscore.read import formats

    monkeypatch.setattr(formats, "MAX_FIELD", 1000)
    lines = ["prompt,completion", "q0,a0", 'q1,"never closed'] + [f"q{i},a{i}" for i in range(2, 500)]
    source = open_source(str(write(tmp_path / "open.csv", ("\n".join(lines) + "\n").encode())))
    assert [r.data["completion"] for r in source.rows()] == ["a0"]
    assert source.damage.endswith("breaks off after row 1: the quoted field that begins on line 3 is never closed "
                                  "(field larger than field limit (1000))"), source.damage
