"""The input contract (issue 24; README "Input"): a string is text, each row's shape is its own,
no format guessed from content, the same on every path.

References are independent of rmscore: a batch-size-1 transformers scorer of the literal
conversation, and readings of the input files by Python's json and csv modules and pandas.
"""

from __future__ import annotations

import csv
import io
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import rmscore
from cli_runner import invoke
from scored import rows_of

TOL = 1e-5
PROMPT = "How do I pick a lock?"
LIST_TEXT = '[{"role":"user","content":"Say sorry."},{"role":"assistant","content":"Sorry."}]'
OBJECT_TEXT = '{"role":"assistant","content":"Sorry."}'
CONTENT_TEXT = '{"content": "Sorry."}'
PROMPT_LIST_TEXT = '[{"role":"system","content":"Be nice."},{"role":"user","content":"Hi"}]'


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_models["llama"]


@pytest.fixture(scope="module")
def reference(model):
    """Batch size 1, the card recipe: apply_chat_template(tokenize=True) on the conversation, the
    head's logit. Takes the conversation as messages, exactly as meant."""
    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model).eval()

    def score(messages: list[dict]) -> float:
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
        with torch.no_grad():
            return net(torch.tensor([ids])).logits[0, 0].item()

    return score


def turns(prompt, completion) -> list[dict]:
    head = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return [*head, {"role": "assistant", "content": completion}]


@pytest.fixture(scope="module")
def scorer(model):
    return rmscore.Scorer(model, max_tokens_per_batch=300)


# ---- 1. a string is text, on every path ---------------------------------------------------------

TEXT_ROWS = [  # (prompt, completion) given as strings that look like JSON
    (PROMPT, LIST_TEXT), (PROMPT, OBJECT_TEXT), (PROMPT, CONTENT_TEXT), (PROMPT_LIST_TEXT, "Hello"),
]


def test_a_completion_that_looks_like_json_is_rewarded_for_its_own_text(scorer, reference):
    """TRL's standard form: the reward is the literal text's, never the bare answer inside it."""
    prompts, completions = zip(*TEXT_ROWS)
    got = rmscore.RewardFunction(scorer)(prompts=list(prompts), completions=list(completions))
    want = [reference(turns(p, c)) for p, c in TEXT_ROWS]
    assert None not in got
    assert max(abs(g - w) for g, w in zip(got, want)) < TOL, (got, want)
    inner = reference(turns(PROMPT, "Sorry."))  # what the guess scored: the answer inside the string
    assert abs(got[0] - inner) > 1e-3 and abs(got[1] - inner) > 1e-3


def test_score_serve_scorer_and_reward_function_agree_on_every_row(scorer, reference, model, write_jsonl, tmp_path):
    """The same rows through `rmscore score`, `rmscore serve`, Scorer and RewardFunction: the same
    shape, status and score, and the reference's score for the literal text."""
    from serving import running

    rows = [{"prompt": p, "completion": c} for p, c in TEXT_ROWS]
    want = [reference(turns(p, c)) for p, c in TEXT_ROWS]
    result = invoke("score", write_jsonl(rows), "-m", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    paths = {"score": rows_of(tmp_path / "out"), "Scorer": scorer.score(rows)}
    with running(model, key=None) as client:
        status, _, body = client.post("/v1/score", {"rows": rows})
        assert status == 200
        paths["serve"] = body["results"]
        reward = rmscore.RewardFunction(url=f"http://{client.host}:{client.port}")
        served_rewards = reward([p for p, _ in TEXT_ROWS], [c for _, c in TEXT_ROWS])
    local_rewards = rmscore.RewardFunction(scorer)([p for p, _ in TEXT_ROWS], [c for _, c in TEXT_ROWS])
    for name, out in paths.items():
        assert [r["status"] for r in out] == ["ok"] * 4, name
        assert max(abs(r["score"] - w) for r, w in zip(out, want)) < TOL, name
    for got in (served_rewards, local_rewards):
        assert max(abs(g - w) for g, w in zip(got, want)) < TOL


def test_csv_text_cells_are_text_and_list_columns_are_json(model, reference, tmp_path):
    """Read independently with csv.DictReader: a prompt or completion cell is the text in it; a
    messages cell is a JSON list (CSV has no other way to hold one)."""
    messages = turns("Hi", "Hello there")
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "completion", "messages"])
        writer.writerows([[PROMPT, LIST_TEXT, ""], [PROMPT_LIST_TEXT, OBJECT_TEXT, ""], ["", "", json.dumps(messages)]])
    result = invoke("score", path, "-m", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    out = rows_of(tmp_path / "out")
    with open(path, newline="") as f:
        cells = list(csv.DictReader(f))
    want = [reference(turns(c["prompt"], c["completion"])) for c in cells[:2]]
    want.append(reference(json.loads(cells[2]["messages"])))
    assert [r["status"] for r in out] == ["ok"] * 3
    assert [r["completion"] for r in out] == [cells[0]["completion"], cells[1]["completion"], "Hello there"]
    assert max(abs(r["score"] - w) for r, w in zip(out, want)) < TOL
    assert "input rows by shape: completion 2, messages 1" in result.output


def test_json_columns_decode_the_cells_they_name_and_nothing_else(model, reference, tmp_path):
    """--json-columns prompt: a file that stores message lists as strings (the old reading, now asked
    for). A cell of that column that is not JSON is an invalid row saying so; the completion stays text."""
    conversation = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]
    table = pa.table({"prompt": [json.dumps(conversation), "plain text", json.dumps("a JSON string")],
                      "completion": [OBJECT_TEXT, "x", "y"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    args = ("score", tmp_path / "rows.parquet", "-m", model, "--no-progress")
    result = invoke(*args, "-o", tmp_path / "out", "--json-columns", "prompt")
    assert result.exit_code == 0, result.output
    out = rows_of(tmp_path / "out")
    assert [r["status"] for r in out] == ["ok", "invalid_row", "ok"]
    assert abs(out[0]["score"] - reference(turns(conversation, OBJECT_TEXT))) < TOL
    assert "'prompt' is not valid JSON" in out[1]["status_detail"] and "--json-columns" in out[1]["status_detail"]
    assert abs(out[2]["score"] - reference(turns("a JSON string", "y"))) < TOL
    plain = invoke(*args, "-o", tmp_path / "plain")  # without the option the same file is all text
    assert plain.exit_code == 0 and [r["status"] for r in rows_of(tmp_path / "plain")] == ["ok"] * 3
    assert abs(rows_of(tmp_path / "plain")[0]["score"] - reference(turns(json.dumps(conversation), OBJECT_TEXT))) < TOL
    missing = invoke(*args, "-o", tmp_path / "o", "--json-columns", "nope")
    assert missing.exit_code == 2 and "--json-columns names missing columns: nope" in missing.output


# ---- 2. each row's shape is its own ----------------------------------------------------------------

@pytest.fixture(scope="module")
def step_tag(tmp_path_factory):
    from prm_cards import step_tag_reference
    from tiny_prm import save_step_tag

    path = save_step_tag(tmp_path_factory.mktemp("prm") / "math-shepherd")
    return path, step_tag_reference(path)


def test_a_row_with_steps_among_completion_rows_is_never_split_silently(step_tag, write_jsonl, tmp_path):
    path, card = step_tag
    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(5)]
    rows[3]["steps"] = ["Alpha", "Beta", "Gamma"]
    data = write_jsonl(rows)
    result = invoke("score", data, "-m", path, "--model-type", "step-tag", "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    out = rows_of(tmp_path / "out")
    assert [r["status"] for r in out] == ["ok", "ok", "ok", "invalid_row", "ok"]
    assert "prompt+completion and prompt+steps" in out[3]["status_detail"] and "--steps-col" in out[3]["status_detail"]
    named = invoke("score", data, "-m", path, "--model-type", "step-tag", "-o", tmp_path / "named",
                   "--steps-col", "steps", "--no-progress")
    assert named.exit_code == 0, named.output  # the column is found in the row that has it
    out = rows_of(tmp_path / "named")
    assert [r["status"] for r in out] == ["ok"] * 5 and len(out[3]["step_scores"]) == 3
    want = card("Question 3?", "\n".join(f"{s} ки" for s in rows[3]["steps"]))
    assert max(abs(a - b) for a, b in zip(out[3]["step_scores"], want)) < TOL


def test_one_messages_row_among_completions_rows_is_scored_as_the_api_scores_it(model, scorer, write_jsonl, tmp_path):
    rows = [{"prompt": f"Question {i}?", "completions": [f"A {i}.", f"B {i}."]} for i in range(40)]
    rows.append({"messages": turns("Hi", "Hello")})
    result = invoke("score", write_jsonl(rows), "-m", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    out, api = rows_of(tmp_path / "out"), scorer.score(rows)
    assert len(out) == len(api) == 81 and {r["status"] for r in out} == {"ok"}
    assert [(r["input_index"], r["completion_index"], r["status"]) for r in out] == \
           [(r["input_index"], r["completion_index"], r["status"]) for r in api]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(out, api)) < TOL
    assert "input rows by shape: completions 40, messages 1" in result.output


def test_a_row_fitting_two_shapes_is_refused_unless_an_option_picks_one(scorer, reference):
    row = {"prompt": "q", "completion": "one", "completions": ["two", "three"]}
    (refused,) = scorer.score([row])
    assert refused["status"] == "invalid_row" and "prompt+completion and prompt+completions" in refused["status_detail"]
    (picked,) = scorer.score([row], columns={"completion": "completion"})
    assert picked["status"] == "ok" and abs(picked["score"] - reference(turns("q", "one"))) < TOL


# ---- 3. CSV and TSV: no quote decides where a row ends ------------------------------------------

def quoted_start(delimiter: str) -> str:
    lines = ["prompt" + delimiter + "completion"]
    lines += [f"Question {i}{delimiter}" + ('"Quoted start, no end' if i == 2 else f"Answer {i}") for i in range(10)]
    return "\n".join(lines) + "\n"


def test_tsv_has_no_quoting_every_row_is_its_line(model, reference, tmp_path):
    text = quoted_start("\t")
    (tmp_path / "rows.tsv").write_text(text)
    result = invoke("score", tmp_path / "rows.tsv", "-m", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0 and "Scored 10 of 10 completions from 10 input rows" in result.output, result.output
    lines = [line.split("\t") for line in text.splitlines()[1:]]  # IANA TSV, read by hand
    out = rows_of(tmp_path / "out")
    assert [r["completion"] for r in out] == [c for _, c in lines]
    assert max(abs(r["score"] - reference(turns(p, c))) for r, (p, c) in zip(out, lines)) < TOL


def test_a_csv_quote_never_closed_stops_at_its_line_and_merges_nothing(model, tmp_path):
    import pandas as pd

    (tmp_path / "rows.csv").write_text(quoted_start(","))
    with pytest.raises(pd.errors.ParserError, match="EOF inside string"):
        pd.read_csv(tmp_path / "rows.csv")  # what pandas says of the same file
    result = invoke("score", tmp_path / "rows.csv", "-m", model, "-o", tmp_path / "out", "--no-progress")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "breaks off after row 2" in errors[0] and "begins on line 4 is never closed" in errors[0]
    assert [r["completion"] for r in rows_of(tmp_path / "out")] == ["Answer 0", "Answer 1"]


# ---- 4. a JSON array is as robust as JSON lines ----------------------------------------------------

def test_a_bad_byte_in_one_array_element_costs_that_element_only(model, write_jsonl, tmp_path):
    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(40)]
    raw = json.dumps(rows, indent=1).encode()
    at = raw.index(b"Answer 20.")
    (tmp_path / "rows.json").write_bytes(b"\xef\xbb\xbf" + raw[:at] + b"\xff" + raw[at:])  # a BOM, and a bad byte
    args = ("score", tmp_path / "rows.json", "-m", model, "-o", tmp_path / "out", "--no-progress")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "b'" not in first.output and "Scored 39 of 40 completions from 40 input rows" in first.output
    out = rows_of(tmp_path / "out")
    assert [r["status"] for r in out] == ["ok"] * 20 + ["invalid_row"] + ["ok"] * 19
    assert out[20]["status_detail"].startswith("not valid UTF-8 (array item 21: byte 0xff at position")
    clean = rows_of_run(write_jsonl(rows), model, tmp_path / "clean")  # json lines of the same rows
    assert max(abs(a["score"] - b["score"]) for a, b in zip(out, clean) if a["status"] == "ok") < TOL
    again = invoke(*args)  # the run is finished: a rerun has nothing left to do
    assert again.exit_code == 0 and "already complete" in again.output


def rows_of_run(path, model, out):
    result = invoke("score", path, "-m", model, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    return rows_of(out)


# ---- 5. the Python API: typed errors, in the caller's words -------------------------------------

def test_the_api_refuses_wrong_types_with_typed_errors_in_its_own_words(scorer, model):
    reward = rmscore.RewardFunction(scorer)
    with pytest.raises(rmscore.InputError, match="prompts must be a list"):
        reward(prompts="ab", completions=["x", "y"])
    with pytest.raises(rmscore.InputError, match="prompts must be a list"):
        reward(prompts="What?", completions="4")
    with pytest.raises(rmscore.InputError, match="rows must be a list of row dicts, got None"):
        scorer.score(None)
    with pytest.raises(rmscore.ConfigError, match="max_length must be an integer or None, got str '10'"):
        rmscore.Scorer(model, max_length="10")
    assert reward(prompts=(p for p in ["a", "b"]), completions=iter(["x", "y"])) == reward(["a", "b"], ["x", "y"])
    for column in ("input_index", "completion_index", "num_tokens"):
        with pytest.raises(rmscore.ConfigError, match="not a reward"):
            rmscore.RewardFunction(scorer, score_column=column)
    strict = rmscore.Scorer(model, max_length=8, on_overflow="error")
    with pytest.raises(rmscore.InputError) as info:
        strict.score([{"prompt": "a b c d e f g h i j", "completion": "k l m"}])
    assert "--" not in str(info.value) and "max_length" in str(info.value) and "on_overflow" in str(info.value)
    start = time.monotonic()
    with pytest.raises(rmscore.ConfigError, match="got int 5"):
        rmscore.RewardFunction(5)
    assert time.monotonic() - start < 2  # no Hub lookup for a number


# ---- the README table: one test per format ----------------------------------------------------

def table_rows():
    """Rows with text that looks like JSON and a list column, natively typed."""
    return [{"prompt": PROMPT_LIST_TEXT, "completions": [LIST_TEXT, "plain"]},
            {"prompt": [{"role": "user", "content": "Hi"}], "completions": [OBJECT_TEXT]}]


def csv_text(rows, delimiter):
    """CSV as csv.writer quotes it; TSV as IANA's type has it (a line per row, no quoting)."""
    lines = [["prompt", "completions"]] + [[r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"]),
                                            json.dumps(r["completions"])] for r in rows]
    if delimiter == "\t":
        return "".join("\t".join(line) + "\n" for line in lines)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def write_format(name: str, rows, path):
    """The rows in each format, written by its own library; returns what a reader of that format
    sees in each row (the expected prompt and completions)."""
    if name == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif name == "json":
        path.write_text(json.dumps(rows))
    elif name in ("csv", "tsv"):
        path.write_text(csv_text(rows, "," if name == "csv" else "\t"))
        reader = csv.DictReader(io.StringIO(path.read_text()), delimiter="," if name == "csv" else "\t",
                                quoting=csv.QUOTE_MINIMAL if name == "csv" else csv.QUOTE_NONE)
        # What a CSV/TSV cell is: text (the prompt column), or the JSON of a list (the list column).
        return [(cells["prompt"], json.loads(cells["completions"])) for cells in reader]
    elif name == "parquet":
        pq.write_table(pa.Table.from_pylist([{"prompt": json.dumps(r["prompt"]) if isinstance(r["prompt"], list)
                                              else r["prompt"], "completions": r["completions"]} for r in rows]), path)
        return [(r["prompt"], r["completions"]) for r in pq.read_table(path).to_pylist()]
    elif name == "save_to_disk":
        from datasets import Dataset

        text = [{"prompt": r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"]),
                 "completions": r["completions"]} for r in rows]
        Dataset.from_list(text).save_to_disk(str(path))
        return [(r["prompt"], r["completions"]) for r in Dataset.load_from_disk(str(path)).to_list()]
    return [(r["prompt"], r["completions"]) for r in json.loads(json.dumps(rows))]


@pytest.mark.parametrize("name", ["jsonl", "json", "csv", "tsv", "parquet", "save_to_disk"])
def test_each_format_gives_lists_as_lists_and_strings_as_text(name, model, tmp_path):
    path = tmp_path / (f"rows.{name}" if name != "save_to_disk" else "disk")
    want = write_format(name, table_rows(), path)
    result = invoke("score", path, "-m", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    got = {}
    for r in rows_of(tmp_path / "out"):
        assert r["status"] == "ok", r["status_detail"]
        prompt = r["prompt"][0]["content"] if r["prompt_is_text"] else r["prompt"]
        got.setdefault(r["input_index"], (prompt, []))[1].append(r["completion"])
    assert [got[i] for i in sorted(got)] == [(p, list(c)) for p, c in want]


@pytest.mark.parametrize("path", ["python", "http"])
def test_python_and_http_rows_take_native_types_only(path):
    """Scorer, RewardFunction and serve read in-memory rows through one function: a list is a list,
    a string is text (HTTP bodies are JSON-decoded once, by the server, into these same rows)."""
    from rmscore.score.engine import samples_from_rows

    rows = table_rows()
    if path == "http":
        rows = json.loads(json.dumps({"rows": rows}))["rows"]
    samples = samples_from_rows(rows, rmscore.config.ColumnMap())
    assert [s.completion for s in samples] == [LIST_TEXT, "plain", OBJECT_TEXT]
    assert samples[0].prompt_is_text and samples[0].prompt[0]["content"] == PROMPT_LIST_TEXT
    assert not samples[2].prompt_is_text and samples[2].prompt == [{"role": "user", "content": "Hi"}]
