"""What a scored folder may hold, and who may read it: one shard layout, claimed before any scoring;
readers (inspect, build-pairs, best-of-n) that refuse an unfinished or mixed folder as merge does;
paths used as given (a literal "~" is a folder name). Each fails on main."""

import json

import pyarrow.parquet as pq

from cli_runner import invoke, run
from rmscore.score.engine import Engine
from tiny import completions_rows


def write_input(path, n_prompts=8):
    rows = [r | {"good": [i % 2 == 0 for i in range(len(r["completions"]))]}
            for r in completions_rows(n_prompts=n_prompts, n_completions=3, seed=5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_run_of_another_shard_count_started_meanwhile_refuses(tiny_models, tmp_path, monkeypatch):
    """Main: `score -o cw2 --shard 0/2 &`, then `score -o cw2 --overwrite` (1 shard) before the first
    saved a row: both were accepted and the folder held two layouts (600 + 264 rows)."""
    path, out = write_input(tmp_path / "in.jsonl"), tmp_path / "cw2"
    second = []
    load = Engine.load

    def load_after_a_second_run_starts(*args, **kwargs):  # the first run holds its shard, no row saved yet
        if not second:
            second.append(invoke("score", path, "-m", tiny_models["llama"], "-o", out, "--overwrite"))
        return load(*args, **kwargs)

    monkeypatch.setattr(Engine, "load", load_after_a_second_run_starts)
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--shard", "0/2", "--id-col", "id")
    refused = second[0]
    assert refused.exit_code == 2 and "is being written by a run of another shard count" in refused.output, \
        refused.output
    assert "shard 00000-of-00002" in refused.output
    assert {p.name.split("-of-")[1][:5] for p in out.glob("part-*.parquet")} == {"00002"}
    assert not list((out / ".rmscore").glob("*-of-00001*"))


def test_readers_refuse_an_unfinished_folder_unless_told(tiny_models, tmp_path):
    """Main: build-pairs on a folder where 1 of 2 shards finished built pairs and said nothing."""
    path, out = write_input(tmp_path / "in.jsonl"), tmp_path / "half"
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--shard", "0/2", "--id-col", "id",
        "--keep-columns", "good")
    commands = [("build-pairs", out, "-o", tmp_path / "pairs.parquet"),
                ("inspect", out, "-o", tmp_path / "look"),
                ("best-of-n", out, "--label-column", "good")]
    for command in commands:
        refused = invoke(*command)
        assert refused.exit_code == 2, refused.output
        assert "1 of 2 shards have not finished: 1" in refused.output, refused.output
        assert "--shard 1/2" in refused.output and "--allow-partial" in refused.output
        run(*command, "--allow-partial")
    run("score", path, "-m", tiny_models["llama"], "-o", out, "--shard", "1/2", "--id-col", "id",
        "--keep-columns", "good")
    for command in commands:
        run(*command, *(("--overwrite",) if command[0] == "build-pairs" else ()))


def test_readers_refuse_a_folder_that_mixes_shard_counts(tiny_models, tmp_path):
    """Main: inspect reported the rows of both layouts (duplicates in its statistics) and build-pairs
    counted them as `identical`."""
    path = write_input(tmp_path / "in.jsonl")
    one, two = tmp_path / "one", tmp_path / "two"
    run("score", path, "-m", tiny_models["llama"], "-o", one, "--id-col", "id")
    for shard in ("0/2", "1/2"):
        run("score", path, "-m", tiny_models["llama"], "-o", two, "--shard", shard, "--id-col", "id")
    for item in [*one.glob("part-*"), *(one / ".rmscore").glob("*.json")]:  # what an older rmscore could leave
        (two / item.relative_to(one)).write_bytes(item.read_bytes())
    for command in (("build-pairs", two, "-o", tmp_path / "p.parquet"), ("inspect", two, "-o", tmp_path / "look")):
        refused = invoke(*command, "--allow-partial")
        assert refused.exit_code == 2 and "mixes runs with different shard counts (1, 2)" in refused.output, \
            refused.output


def test_a_literal_tilde_is_a_folder_name(tiny_models, tmp_path, monkeypatch):
    """Main: pyarrow expanded `-o '~'`, so a temporary part landed in $HOME and the rename failed."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    path = write_input(tmp_path / "in.jsonl")
    for out in ("~", "~/sub"):
        run("score", path, "-m", tiny_models["llama"], "-o", out, "--id-col", "id")
        assert pq.read_table(tmp_path / out).num_rows == 24
    (tmp_path / "~" / ".tmp-merged.parquet").write_bytes(b"left by a merge killed before its rename")
    run("merge", "~/sub", "-o", "~/merged.parquet")
    assert not (tmp_path / "~" / ".tmp-merged.parquet").exists()
    run("build-pairs", "~/sub", "-o", "~/pairs.parquet")
    run("inspect", "~/sub", "-o", "~/look")
    run("inspect", "~/pairs.parquet", "-o", "~/look-pairs")
    assert pq.read_table(tmp_path / "~" / "merged.parquet").num_rows == 24
    assert (tmp_path / "~" / "look" / "inspect.json").is_file() and (tmp_path / "~" / "pairs.parquet").is_file()
    assert [p for p in home.rglob("*") if "matplotlib" not in p.parts and p.name not in (".cache", ".config")] == []
