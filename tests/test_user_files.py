"""No command deletes or overwrites a file or folder it did not create: each command writing
files runs with -o at a folder of unrelated user files, which must all survive byte for byte.
(`doctor` and `models` write nothing.)"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiny import completions_rows
from cli_runner import invoke

USER_FILES = {
    "notes.txt": b"my notes",
    "eval.json": b'{"mine": true}',
    "margins.png": b"not rmscore's",
    "bestofn.json": b"{}",
    "bestofn.png": b"mine too",
    "pairs.report.json": b'{"my": "report"}',
    "scores/README.txt": b"my scores",
}


@pytest.fixture(scope="module")
def work(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("user-files")
    rows = completions_rows(n_prompts=3, n_completions=2, seed=4, long_tail=False)
    for row in rows:
        row["right"] = [1, 0]
    (root / "gens.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [{"prompt": r["prompt"], "chosen": r["completions"][0], "rejected": r["completions"][1]} for r in rows]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    scored = invoke("score", root / "gens.jsonl", "-m", tiny_models["llama"], "-o", root / "scored",
                    "--keep-columns", "right")
    assert scored.exit_code == 0, scored.output
    return {"root": root, "model": tiny_models["llama"]}


def user_folder(path):
    for name, data in USER_FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    pq.write_table(pa.table({"x": [1, 2]}), path / "scores" / "merged.parquet")
    pq.write_table(pa.table({"y": ["a"]}), path / "data.parquet")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


COMMANDS = {
    "score": lambda w, mine: ("score", w["root"] / "gens.jsonl", "-m", w["model"], "-o", mine),
    "eval": lambda w, mine: ("eval", w["root"] / "pairs.jsonl", "-m", w["model"], "-o", mine),
    "eval --cache-dir": lambda w, mine: ("eval", w["root"] / "pairs.jsonl", "-m", w["model"], "-o",
                                         w["root"] / "ev", "--cache-dir", mine),
    "best-of-n": lambda w, mine: ("best-of-n", w["root"] / "scored", "--label-column", "right", "-o", mine),
    "build-pairs": lambda w, mine: ("build-pairs", w["root"] / "scored", "-o", mine, "--overwrite"),
    "build-pairs beside a report": lambda w, mine: ("build-pairs", w["root"] / "scored", "-o", mine / "pairs.parquet"),
    "merge": lambda w, mine: ("merge", w["root"] / "scored", "-o", mine, "--overwrite"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_user_files_survive(work, tmp_path, command):
    mine = tmp_path / "mine"
    before = user_folder(mine)
    result = invoke(*COMMANDS[command](work, mine))
    after = {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    assert {name: after.get(name) for name in before} == before, result.output
    if command == "score":
        assert result.exit_code == 0, result.output  # it adds its parts beside the user's files
    else:
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
