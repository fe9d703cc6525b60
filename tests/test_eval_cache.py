"""`rmscore eval`'s score cache: never deletes what rmscore did not write, and is reused only for
the same content (every file read, the chat template's text, resolved paths)."""

import json

import pytest

from test_evaluate import PAIRS
from cli_runner import invoke, run


def write_pairs(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def accuracy(out):
    return json.loads((out / "eval.json").read_text())


def test_a_cache_dir_holding_user_files_is_refused_and_left_alone(tiny_models, tmp_path, monkeypatch):
    data = tmp_path / "dir"
    path = write_pairs(data / "pairs.jsonl", PAIRS)
    (data / "notes.txt").write_text("mine")
    before = snapshot(data)
    monkeypatch.chdir(data)
    result = invoke("eval", "pairs.jsonl", "-m", tiny_models["llama"], "--cache-dir", ".", "-o", "../ev")
    assert result.exit_code == 2 and "is not an rmscore eval cache" in result.output, result.output
    assert snapshot(data) == before and path.is_file()
    # -o . with a scores/ folder of the user's: refused, not replaced.
    (data / "scores").mkdir()
    (data / "scores" / "README.txt").write_text("my notes")
    (data / "scores" / "merged.parquet").write_bytes(b"PAR1 not really")
    before = snapshot(data)
    result = invoke("eval", "pairs.jsonl", "-m", tiny_models["llama"], "-o", ".")
    assert result.exit_code == 2 and "README.txt" in result.output
    assert snapshot(data) == before


def test_a_failed_eval_leaves_no_cache_folder(tmp_path, write_jsonl):
    out = tmp_path / "ev"
    result = invoke("eval", write_jsonl(PAIRS), "-m", tmp_path / "no-such-model", "-o", out)
    assert result.exit_code != 0
    assert not out.exists(), sorted(out.rglob("*"))


def test_an_edit_below_a_folder_input_rescores(tiny_models, tmp_path):
    """The data sits in pdir/data/: no file at the top level, and the swap keeps every size."""
    train = write_pairs(tmp_path / "pdir" / "data" / "train.jsonl", PAIRS)
    run("eval", tmp_path / "pdir", "-m", tiny_models["llama"], "-o", tmp_path / "e")
    before = accuracy(tmp_path / "e")
    size = train.stat().st_size
    write_pairs(train, [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS])
    assert train.stat().st_size == size
    again = run("eval", tmp_path / "pdir", "-m", tiny_models["llama"], "-o", tmp_path / "e")
    assert "reusing" not in again.output
    after = accuracy(tmp_path / "e")
    assert after["accuracy"] == pytest.approx(1 - before["accuracy"])
    assert before["margin"]["mean"] != 0
    assert after["margin"]["mean"] == pytest.approx(-before["margin"]["mean"], abs=1e-5)


def test_the_same_folder_name_in_two_projects_shares_no_scores(tiny_models, tmp_path, monkeypatch):
    write_pairs(tmp_path / "a" / "data" / "part" / "x.jsonl", PAIRS)
    write_pairs(tmp_path / "b" / "data" / "part" / "x.jsonl", PAIRS[:2])
    cache = tmp_path / "shared-cache"
    monkeypatch.chdir(tmp_path / "a")
    run("eval", "data", "-m", tiny_models["llama"], "--cache-dir", cache, "-o", tmp_path / "ea")
    monkeypatch.chdir(tmp_path / "b")
    result = run("eval", "data", "-m", tiny_models["llama"], "--cache-dir", cache, "-o", tmp_path / "eb")
    assert "reusing" not in result.output
    assert accuracy(tmp_path / "ea")["pairs"] == 5 and accuracy(tmp_path / "eb")["pairs"] == 2


def test_an_edited_chat_template_file_rescores(tiny_models, tmp_path, write_jsonl):
    path = write_jsonl(PAIRS)
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    args = ("eval", path, "-m", tiny_models["llama"], "--chat-template", template)
    run(*args, "-o", tmp_path / "e")
    template.write_text("{% for m in messages %}{{ m['role'] }}{% endfor %}")  # every row renders the same
    again = run(*args, "-o", tmp_path / "e")
    assert "reusing" not in again.output
    report = accuracy(tmp_path / "e")
    assert report["ties"] == 1.0 and report["margin"]["mean"] == 0.0
    # Unchanged content (rewritten in place) is still a hit.
    template.write_text(template.read_text())
    assert "reusing" in run(*args, "-o", tmp_path / "e").output


def test_score_overwrite_into_the_cache_is_never_reused(tiny_models, tmp_path):
    """Main: after `score swapped.jsonl -o E/scores --overwrite`, eval said `reusing scores in E/scores
    (same data, model and settings)` and reported the swapped data's accuracy."""
    held = write_pairs(tmp_path / "held.jsonl", PAIRS)
    swapped = write_pairs(tmp_path / "swapped.jsonl",
                          [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS])
    run("eval", held, "-m", tiny_models["llama"], "-o", tmp_path / "E")
    before = accuracy(tmp_path / "E")["margin"]["mean"]
    assert before != 0
    assert "reusing" in run("eval", held, "-m", tiny_models["llama"], "-o", tmp_path / "E").output
    run("score", swapped, "-m", tiny_models["llama"], "-o", tmp_path / "E" / "scores", "--overwrite")
    again = run("eval", held, "-m", tiny_models["llama"], "-o", tmp_path / "E")
    assert "reusing" not in again.output and "changed since eval made them" in again.output, again.output
    assert accuracy(tmp_path / "E")["margin"]["mean"] == pytest.approx(before, abs=1e-5)  # main: -before


def test_a_cache_whose_parts_changed_is_not_reused(tiny_models, tmp_path):
    """The key is trusted only while the parts are the ones it was written for: a part replaced by
    hand (same names, other rows) makes eval score again."""
    held = write_pairs(tmp_path / "held.jsonl", PAIRS)
    swapped = write_pairs(tmp_path / "swapped.jsonl",
                          [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in PAIRS])
    run("eval", held, "-m", tiny_models["llama"], "-o", tmp_path / "E")
    before = accuracy(tmp_path / "E")["margin"]["mean"]
    run("score", swapped, "-m", tiny_models["llama"], "-o", tmp_path / "other")
    for part in (tmp_path / "other").glob("part-*.parquet"):
        (tmp_path / "E" / "scores" / part.name).write_bytes(part.read_bytes())
    again = run("eval", held, "-m", tiny_models["llama"], "-o", tmp_path / "E")
    assert "reusing" not in again.output
    assert accuracy(tmp_path / "E")["margin"]["mean"] == pytest.approx(before, abs=1e-5)
