"""A catalogue of bad inputs, one table, and what each gets from `rmscore score`.

FATAL  the input cannot be read as a whole: the run stops with one line, exit 2, before the model
       loads (load_model is replaced by a function that fails the test) and without writing a part.
ROW    one row cannot be read or scored: it is written with its status and a reason that says what
       is wrong, counted in the summary and the stats, and every other row gets the score it gets
       in a clean input. The rows of one file are scored in one run, good rows between them.
BREAK  a file that breaks off part-way: every row before the break is scored and saved, one line
       names the file and where it broke, the exit status is 2, and a rerun scores nothing.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scored import TOL, rows_of
from cli_runner import invoke

GOOD = [("What is the capital of France?", "Paris."), ("Name a prime number.", "Seven."),
        ("How do I boil an egg?", "Simmer it for nine minutes."), ("Say hello.", "Hello!")]


@dataclass
class Case:
    name: str
    kind: str  # "fatal" | "row" | "break"
    file: str  # the input's file name (rows of one file share a run)
    content: object = None  # bytes, a row dict, or a callable(path) that writes the input
    expect: str = ""  # a part of the one-line error (fatal, break) or of status_detail (row)
    status: str = "invalid_row"
    args: tuple = ()


def line(text: str) -> bytes:
    return text.encode() if isinstance(text, str) else text


def parquet_of(rows):
    return lambda path: pq.write_table(pa.Table.from_pylist(rows), path) if rows else pq.write_table(
        pa.table({"prompt": pa.array([], pa.string()), "completion": pa.array([], pa.string())}), path)


def folder_of(files: dict):
    def write(path):
        path.mkdir()
        for name, data in files.items():
            (path / name).write_bytes(data)
    return write


def gz_cut(data: bytes):
    return lambda path: path.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) * 2 // 3])


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


MANY = [{"prompt": f"Question {i}: what is {i} + {i}?", "completion": f"It is {2 * i}."} for i in range(120)]
U = "user"

CASES = [
    # ---- fatal: unreadable as a whole, before the model loads
    Case("missing file", "fatal", "nope.jsonl", None, "input not found"),
    Case("missing file with a name like a Hub dataset", "fatal", "data.json", None, "input not found"),
    Case("empty file", "fatal", "empty.jsonl", b"", "is empty"),
    Case("blank lines only", "fatal", "blank.jsonl", b"\n  \n\n", "is empty"),
    Case("no JSON object in its first lines", "fatal", "junk.jsonl", b"junk\n" * 5, "first: not valid JSON"),
    Case("gzip data under a .jsonl name", "fatal", "zipped.jsonl", gzip.compress(jsonl(MANY[:2])), "gzip-compressed"),
    Case("a .gz that is not gzip", "fatal", "plain.jsonl.gz", jsonl(MANY[:2]), "Not a gzipped file"),
    Case("unknown file type", "fatal", "data.xlsx", b"PK\x03\x04", "cannot tell the format"),
    Case("columns of no known shape", "fatal", "shape.jsonl", jsonl([{"question": "q", "answer": "a"}]),
         "cannot tell the row shape"),
    Case("--prompt-col names a missing column", "fatal", "col.jsonl", jsonl(MANY[:2]), "column 'q' not found",
         args=("--prompt-col", "q")),
    Case("--keep-columns names a missing column", "fatal", "keep.jsonl", jsonl(MANY[:2]),
         "--keep-columns names missing columns", args=("--keep-columns", "topic")),
    Case("--keep-columns clashes with an output column", "fatal", "clash.jsonl",
         jsonl([{"prompt": "q", "completion": "a", "status": "draft"}]), "clashes with an output column",
         args=("--keep-columns", "status")),
    Case("corrupt Parquet", "fatal", "bad.parquet", b"PAR1 not really", "cannot read Parquet file"),
    Case("Parquet with no rows", "fatal", "none.parquet", parquet_of([]), "has no rows"),
    Case("CSV with a header only", "fatal", "head.csv", b"prompt,completion\n", "is empty"),
    Case("empty CSV", "fatal", "empty.csv", b"", "is empty"),
    Case("a pretty-printed JSON object", "fatal", "object.json", b'{\n  "data": []\n}\n', "no readable row"),
    Case("a JSON array cut before its first item", "fatal", "cut.json", b'[{"prompt": "q", ', "cannot be read"),
    Case("a folder with no data files", "fatal", "folder", folder_of({"README.txt": b"hi"}), "holds no"),
    Case("a folder holding a JSON array", "fatal", "arrays", folder_of({"a.json": json.dumps(MANY[:2]).encode()}),
         "is a JSON array"),
    Case("-o names a file", "fatal", "out-file.jsonl", jsonl(MANY[:2]), "exists and is a file", args=("-o", "FILE")),
    # ---- rows of a JSON lines file
    Case("a line that is not JSON", "row", "rows.jsonl", line('{"prompt": "q", "completion": '), "not valid JSON"),
    Case("bytes that are not UTF-8", "row", "rows.jsonl", b'{"prompt": "caf\xe9", "completion": "x"}',
         "not valid UTF-8 (line"),
    Case("a line that is an array", "row", "rows.jsonl", line("[1, 2]"), "not a JSON object but an array"),
    Case("a line that is a string", "row", "rows.jsonl", line('"hello"'), "not a JSON object but a string"),
    Case("a line that is null", "row", "rows.jsonl", line("null"), "not a JSON object but null"),
    Case("prompt null", "row", "rows.jsonl", {"prompt": None, "completion": "x"},
         "'prompt' must be a string or a list of messages, got null"),
    Case("prompt missing", "row", "rows.jsonl", {"completion": "x"}, "the row has no 'prompt' field"),
    Case("prompt a number", "row", "rows.jsonl", {"prompt": 3, "completion": "x"}, "got int"),
    Case("prompt an empty list", "row", "rows.jsonl", {"prompt": [], "completion": "x"}, "got an empty list"),
    Case("a message without a role", "row", "rows.jsonl", {"prompt": [{"content": "hi"}], "completion": "x"},
         "'prompt' message 1 has no 'role'"),
    Case("a role that is not text", "row", "rows.jsonl", {"prompt": [{"role": 1, "content": "hi"}], "completion": "x"},
         "'prompt' message 1 has role int, expected text"),
    Case("a message whose content is null", "row", "rows.jsonl",
         {"prompt": [{"role": U, "content": "hi"}, {"role": U, "content": None}], "completion": "x"},
         "'prompt' message 2 has content null"),
    Case("a message that is a string", "row", "rows.jsonl", {"prompt": ["hi"], "completion": "x"},
         "'prompt' message 1 is str, not a {role, content} object"),
    Case("completion null", "row", "rows.jsonl", {"prompt": "q", "completion": None}, "'completion' is null"),
    Case("completion missing", "row", "rows.jsonl", {"prompt": "q"}, "cannot tell the row shape from its fields"),
    Case("a row that fits two shapes", "row", "rows.jsonl", {"prompt": "q", "completion": "a", "completions": ["b"]},
         "fits 2 shapes, prompt+completion and prompt+completions"),
    Case("completion a number", "row", "rows.jsonl", {"prompt": "q", "completion": 42}, "'completion' is int"),
    Case("a completion written by the user", "row", "rows.jsonl",
         {"prompt": "q", "completion": {"role": U, "content": "x"}}, "'completion' ends with a 'user' message"),
    Case("a completion message without content", "row", "rows.jsonl",
         {"prompt": "q", "completion": {"role": "assistant"}}, "'completion' message 1 has no 'content'"),
    Case("a row longer than --max-length", "row", "rows.jsonl", {"prompt": "q " * 300, "completion": "x"},
         "longer than the max length", status="too_long"),
    # ---- rows of a CSV file (header: prompt,completion)
    Case("a CSV row with too many fields", "row", "rows.csv", b"q,a,extra", "wrong number of fields (row"),
    Case("a CSV cell that is not UTF-8", "row", "rows.csv", b"caf\xe9,x", "not valid UTF-8 (row"),
    Case("an empty CSV cell", "row", "rows.csv", b"q,", "'completion' is null"),
    Case("the CSV header line again (files joined together)", "row", "rows.csv", b"prompt,completion",
         "the header line again (row"),
    Case("a stray quote after a quoted CSV field", "row", "rows.csv", b'q,"a"b', "malformed quoting (row"),
    Case("a CSV messages cell lacking a role", "row", "messages.csv", b'"[{""content"": ""hi""}]"',
         "'messages' message 1 has no 'role'"),
    Case("a CSV messages cell that is not JSON", "row", "messages.csv", b"hello there",
         "'messages' is not valid JSON (Expecting value at character 1"),
    # ---- items of a JSON array
    Case("an array item that is a number", "row", "rows.json", 5, "not a JSON object but a number (array item"),
    Case("an array item whose prompt is null", "row", "rows.json", {"prompt": None, "completion": "x"}, "got null"),
    Case("an array item holding a byte that is not UTF-8", "row", "rows.json",
         b'{"prompt": "caf\xe9", "completion": "x"}', "not valid UTF-8 (array item"),
    Case("an array item that is not valid JSON", "row", "rows.json", b'{"prompt": "q", "completion": x}',
         "not valid JSON (array item"),
    # ---- other row shapes
    Case("completions that are text, not a list", "row", "completions.jsonl", {"prompt": "q", "completions": "abc"},
         "'completions' must be a non-empty list, got str"),
    Case("completions an empty list", "row", "completions.jsonl", {"prompt": "q", "completions": []},
         "got an empty list"),
    Case("one completion of a list is null", "row", "completions.jsonl", {"prompt": "q", "completions": ["Yes.", None]},
         "'completions[1]' is null"),
    Case("a conversation ending with the user", "row", "messages.jsonl",
         {"messages": [{"role": U, "content": "q"}, {"role": "assistant", "content": "a"},
                       {"role": U, "content": "?"}]},
         "ends with a 'user' turn, not the assistant's"),
    Case("a conversation of one message", "row", "messages.jsonl", {"messages": [{"role": U, "content": "q"}]},
         "has one message"),
    Case("messages that are a number", "row", "messages.jsonl", {"messages": 7},
         "'messages' must be a non-empty list of messages, got int"),
    Case("a pair whose chosen side is null", "row", "pairs.jsonl", {"prompt": "q", "chosen": None, "rejected": "No."},
         "'chosen' is null"),
    # ---- files that break off: the rows before the break are kept
    Case("a .jsonl.gz cut short", "break", "cut.jsonl.gz", gz_cut(jsonl(MANY)), "breaks off after line"),
    Case("a .csv.gz cut short", "break", "cut.csv.gz",
         gz_cut(b"prompt,completion\n" + b"".join(f'"{r["prompt"]}","{r["completion"]}"\n'.encode() for r in MANY)),
         "breaks off after row"),
    Case("a .json.gz array cut short", "break", "cut.json.gz", gz_cut(json.dumps(MANY).encode()),
         "breaks off after array item"),
    Case("a JSON array with a syntax error part-way", "break", "syntax.json",
         json.dumps(MANY[:50]).encode().replace(b'}, {"prompt": "Question 30', b'} {"prompt": "Question 30'),
         "breaks off after array item 30"),
]
SHAPES = {"rows.jsonl": "completion", "rows.csv": "completion", "rows.json": "completion", "messages.csv": "messages",
          "completions.jsonl": "completions", "messages.jsonl": "messages", "pairs.jsonl": "pairs"}


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


def write_case(case: Case, path: Path) -> None:
    if callable(case.content):
        case.content(path)
    elif case.content is not None:
        path.write_bytes(case.content)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "fatal"], ids=lambda c: c.name)
def test_fatal_input_stops_before_the_model_loads(case, tmp_path, monkeypatch, tiny_models):
    def no_model(*_, **__):
        raise AssertionError("the model was loaded for an input that cannot be read")

    monkeypatch.setattr("rmscore.models.load_model", no_model)
    monkeypatch.chdir(tmp_path)  # relative names, as a user types them
    write_case(case, tmp_path / case.file)
    out = tmp_path / "out"
    if "FILE" in case.args:
        out.write_text("a file, not a folder")
    args = [out if a == "FILE" else a for a in case.args]
    result = invoke("score", case.file, "-m", tiny_models["llama"], "--no-progress", *args,
                    *([] if "-o" in args else ["-o", out]))
    errors = [text for text in result.output.splitlines() if text.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert case.expect in errors[0], errors[0]
    assert not list(tmp_path.rglob("part-*.parquet"))


def row_file(name: str, cases: list[Case], path: Path) -> list[int]:
    """The input: a good row, then each case's bad row, each followed by a good one. Returns the
    input position of every case's row."""
    good = [_good(name, i) for i in range(len(GOOD))]
    lines, where = [good[0]], []
    for i, case in enumerate(cases):
        where.append(len(lines))
        lines += [case.content, good[(i + 1) % len(good)]]
    if name.endswith(".csv"):
        header = b"messages" if SHAPES[name] == "messages" else b"prompt,completion"
        path.write_bytes(header + b"\n" + b"\n".join(_csv(row) for row in lines) + b"\n")
    elif name.endswith(".json"):  # items written as given: bytes stay bytes, however broken
        path.write_bytes(b"[" + b",\n".join(row if isinstance(row, bytes) else json.dumps(row).encode()
                                            for row in lines) + b"]")
    else:
        path.write_bytes(b"\n".join(row if isinstance(row, bytes) else json.dumps(row).encode() for row in lines))
    return where


def _good(name: str, i: int):
    prompt, answer = GOOD[i]
    shape = SHAPES[name]
    if shape == "completions":
        return {"prompt": prompt, "completions": [answer, answer + " Sure."]}
    if shape == "messages":
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
    if shape == "pairs":
        return {"prompt": prompt, "chosen": answer, "rejected": "I do not know."}
    return {"prompt": prompt, "completion": answer}


def _csv(row) -> bytes:
    if isinstance(row, bytes):
        return row
    if "messages" in row:  # a list column holds JSON, quoted as csv.writer quotes it
        return ('"' + json.dumps(row["messages"]).replace('"', '""') + '"').encode()
    return f'"{row["prompt"]}","{row["completion"]}"'.encode()


@pytest.fixture(scope="module")
def scored_rows(tiny_models, tmp_path_factory):
    """Every row file scored in one run each, and a clean input of the good rows scored alone."""
    root = tmp_path_factory.mktemp("rows")
    runs = {}
    for name in SHAPES:
        cases = [c for c in CASES if c.kind == "row" and c.file == name]
        where = row_file(name, cases, root / name)
        out = root / f"out-{name}"
        result = invoke("score", root / name, "-m", tiny_models["llama"], "-o", out, "--max-length", 200,
                        "--no-progress")
        done = result.exit_code == 0  # else each case of the file fails on its own, saying why
        stats = json.loads(next((out / ".rmscore").glob("stats-*.json")).read_text()) if done else {}
        runs[name] = (dict(zip((c.name for c in cases), where)), rows_of(out) if done else [], result, stats)
    ok = {(json.dumps(r["prompt"]), r["completion"]) for _, rows, _, _ in runs.values() for r in rows
          if r["status"] == "ok"}
    clean = root / "clean.jsonl"
    clean.write_text("".join(json.dumps({"prompt": json.loads(p), "completion": c}) + "\n" for p, c in sorted(ok)))
    assert invoke("score", clean, "-m", tiny_models["llama"], "-o", root / "clean", "--no-progress").exit_code == 0
    reference = {(json.dumps(r["prompt"]), r["completion"]): r["score"] for r in rows_of(root / "clean")}
    return runs, reference


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "row"], ids=lambda c: c.name)
def test_bad_row_is_written_counted_and_harmless(case, scored_rows):
    runs, reference = scored_rows
    where, rows, result, stats = runs[case.file]
    assert result.exit_code == 0, result.output
    output = result.output
    mine = [r for r in rows if r["input_index"] == where[case.name] and r["status"] != "ok"]
    assert len(mine) == 1, [r for r in rows if r["input_index"] == where[case.name]]
    assert mine[0]["status"] == case.status and mine[0]["score"] is None
    assert case.expect in mine[0]["status_detail"], mine[0]["status_detail"]
    bad = sum(r["status"] == case.status for r in rows)
    assert f"  {case.status}: {bad}" in output and stats["statuses"][case.status] == bad
    assert sum(stats["details"].values()) == sum(r["status"] != "ok" for r in rows)
    # Every other row, good rows around it and siblings of the same input row, scores as in a clean input.
    for row in rows:
        if row["status"] == "ok":
            assert abs(row["score"] - reference[json.dumps(row["prompt"]), row["completion"]]) < TOL


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "break"], ids=lambda c: c.name)
def test_input_that_breaks_off_keeps_every_row_before(case, tmp_path, tiny_models):
    path, out = tmp_path / case.file, tmp_path / "out"
    write_case(case, path)
    args = ("score", path, "-m", tiny_models["llama"], "-o", out, "--no-progress", "--rows-per-part", 20)
    first = invoke(*args)
    errors = [text for text in first.output.splitlines() if text.startswith("Error:")]
    assert first.exit_code == 2 and len(errors) == 1 and case.expect in errors[0], first.output
    assert str(path) in errors[0]
    rows = rows_of(out)
    assert 0 < len(rows) < len(MANY) and all(r["status"] == "ok" for r in rows)
    # Rows are the file's rows in order, none lost before the break: row i is question i.
    assert [r["prompt"][0]["content"] for r in rows] == [m["prompt"] for m in MANY[: len(rows)]]
    again = invoke(*args)
    assert again.exit_code == 2 and "already complete" in again.output and case.expect in again.output
    assert len(rows_of(out)) == len(rows)
    assert invoke("merge", out, "-o", tmp_path / "merged.parquet").exit_code == 0
