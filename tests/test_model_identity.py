"""build-pairs compares the reward models its inputs record by content (the checkpoint's digest),
not by the -m string as typed."""

import json
import shutil

from safetensors.torch import load_file, save_file

from rmscore.store.output import read_metadata
from tiny import completions_rows
from cli_runner import invoke, run


def two_inputs(tmp_path):
    rows = completions_rows(n_prompts=4, n_completions=3, seed=2)
    paths = []
    for name, part in (("in1.jsonl", rows[:2]), ("in2.jsonl", rows[2:])):
        paths.append(tmp_path / name)
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


def test_the_same_model_named_two_ways_is_one_model(tiny_models, tmp_path, monkeypatch):
    shutil.copytree(tiny_models["llama"], tmp_path / "rm")
    in1, in2 = two_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("score", in1, "-m", "rm", "-o", "s1")
    run("score", in2, "-m", tmp_path / "rm", "-o", "s2")
    result = run("build-pairs", "s1", "s2", "-o", "pairs.parquet")
    assert "Built 4 pairs" in result.output
    first, second = read_metadata(tmp_path / "s1"), read_metadata(tmp_path / "s2")
    assert first["model"] != second["model"] and first["model_path"] == second["model_path"] == str(tmp_path / "rm")
    assert first["model_digest"] == second["model_digest"]


def test_two_checkpoints_called_rm_do_not_mix(tiny_models, tmp_path, monkeypatch):
    for project in ("a", "b"):
        shutil.copytree(tiny_models["llama"], tmp_path / project / "rm")
    weights = load_file(tmp_path / "b" / "rm" / "model.safetensors")
    weights["score.weight"] = -weights["score.weight"]  # another checkpoint: every score negated
    save_file(weights, tmp_path / "b" / "rm" / "model.safetensors", metadata={"format": "pt"})
    in1, in2 = two_inputs(tmp_path)
    for project, path in (("a", in1), ("b", in2)):
        monkeypatch.chdir(tmp_path / project)
        run("score", path, "-m", "rm", "-o", tmp_path / f"s-{project}")
    refused = invoke("build-pairs", tmp_path / "s-a", tmp_path / "s-b", "-o", tmp_path / "p.parquet")
    assert refused.exit_code == 2 and "2 different reward models" in refused.output, refused.output
    assert str(tmp_path / "a" / "rm") in refused.output and "--allow-mixed-models" in refused.output
    allowed = run("build-pairs", tmp_path / "s-a", tmp_path / "s-b", "-o", tmp_path / "p.parquet",
                  "--allow-mixed-models")
    assert "2 reward models (--allow-mixed-models)" in allowed.output and "Built 4 pairs" in allowed.output


def test_a_copied_checkpoint_is_the_same_model(tiny_models, tmp_path):
    """`cp -r rm rm_copy`: main refused build-pairs (`scored by 2 different reward models`) and a
    shard run with the copy (`--model was '.../rm', now '.../rm_copy'`), though both recorded one digest."""
    shutil.copytree(tiny_models["llama"], tmp_path / "rm")
    shutil.copytree(tmp_path / "rm", tmp_path / "rm_copy")
    in1, in2 = two_inputs(tmp_path)
    run("score", in1, "-m", tmp_path / "rm", "-o", tmp_path / "s1")
    run("score", in2, "-m", tmp_path / "rm_copy", "-o", tmp_path / "s2")
    assert read_metadata(tmp_path / "s1")["model_digest"] == read_metadata(tmp_path / "s2")["model_digest"]
    paired = run("build-pairs", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "pairs.parquet")
    assert "Built 4 pairs" in paired.output and "reward models" not in paired.output
    rows = completions_rows(n_prompts=8, n_completions=3, seed=2)
    both = tmp_path / "all.jsonl"
    both.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run("score", both, "-m", tmp_path / "rm", "-o", tmp_path / "sharded", "--shard", "0/2")
    second = run("score", both, "-m", tmp_path / "rm_copy", "-o", tmp_path / "sharded", "--shard", "1/2")
    assert "already complete" not in second.output
    run("merge", tmp_path / "sharded", "-o", tmp_path / "merged.parquet")
    # Another model beside a shard of this one is still refused, by its digest.
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "rm", other)
    weights = load_file(other / "model.safetensors")
    weights["score.weight"] = -weights["score.weight"]
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    run("score", both, "-m", tmp_path / "rm", "-o", tmp_path / "mixed", "--shard", "0/2")
    refused = invoke("score", both, "-m", other, "-o", tmp_path / "mixed", "--shard", "1/2")
    assert refused.exit_code == 2 and "model files (config, tokenizer or weights) was" in refused.output, \
        refused.output
