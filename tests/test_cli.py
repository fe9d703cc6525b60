import json
import shutil
import subprocess
import sys

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from rmscore.cli import app
from tiny import completions_rows
from cli_runner import invoke

runner = CliRunner()


def test_score_end_to_end(tiny_models, write_jsonl, tmp_path):
    path = write_jsonl(completions_rows(3, 2) + ["{broken"])
    result = invoke("score", path, "-m", tiny_models["llama"], "-o", tmp_path / "out", "--max-tokens-per-batch", 256)
    assert result.exit_code == 0, result.output
    assert "Scored 6 of 7 completions from 4 input rows" in result.output
    assert "invalid_row: 1" in result.output and "not valid JSON" in result.output
    assert ds.dataset(str(tmp_path / "out")).count_rows() == 7
    stats = json.loads(next((tmp_path / "out" / ".rmscore").glob("stats-*.json")).read_text())
    assert stats["statuses"] == {"ok": 6, "invalid_row": 1}


def test_rerun_is_a_no_op_and_other_settings_refuse(tiny_models, write_jsonl, tmp_path):
    path = write_jsonl(completions_rows(1, 1))
    args = ("score", path, "-m", tiny_models["llama"], "-o", tmp_path / "out")
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0 and "already complete" in again.output
    one_line_error(invoke(*args, "--max-length", 64), "--max-length was None, now 64", "--overwrite")
    assert invoke(*args, "--max-length", 64, "--overwrite").exit_code == 0


def one_line_error(result, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output  # one line says what is wrong; "Fix:" may follow
    for needle in needles:
        assert needle in result.output, result.output


def test_missing_input_stops_before_the_model(tmp_path):
    # The model path does not exist either: the input error must come first.
    result = invoke("score", tmp_path / "nope.jsonl", "-m", tmp_path / "no-model", "-o", tmp_path / "out")
    one_line_error(result, "input not found")


@pytest.mark.parametrize("name", ["data.jsonl", "data.xlsx", "gens/data.parquet"])
def test_a_missing_file_is_not_a_hub_dataset(tmp_path, monkeypatch, name):
    # Issue 19: a typo in an empty folder said "cannot load Hub dataset 'data.jsonl'". A name that
    # looks like a file says "input not found" and where it looked, for score and eval alike.
    monkeypatch.chdir(tmp_path)
    for command in (("score", name, "-o", "scored/"), ("eval", name)):
        result = invoke(*command)
        one_line_error(result, f"input not found: {name}", str(tmp_path / name))
        assert "Hub" not in result.output.splitlines()[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unknown_layout_and_empty_input(write_jsonl, tmp_path):
    one_line_error(invoke("score", write_jsonl([{"q": 1}]), "-o", tmp_path / "o"), "row shape", "--prompt-col")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    one_line_error(invoke("score", empty, "-o", tmp_path / "o"), "empty")


def test_model_folder_that_is_not_a_reward_model(tiny_models, write_jsonl, tmp_path, copy_model):
    path = write_jsonl(completions_rows(1, 1))
    no_config = tmp_path / "empty-model"
    no_config.mkdir()
    one_line_error(invoke("score", path, "-m", no_config, "-o", tmp_path / "o"), "no config.json")
    causal = copy_model(tiny_models["llama"])
    config = json.loads((causal / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (causal / "config.json").write_text(json.dumps(config))
    one_line_error(invoke("score", path, "-m", causal, "-o", tmp_path / "o"), "cannot tell which", "--model-type")


def test_pickle_weights_refused(tiny_models, write_jsonl, tmp_path, copy_model):
    import torch
    from safetensors.torch import load_file

    model = copy_model(tiny_models["llama"])
    weights = model / "model.safetensors"
    torch.save(load_file(weights), model / "pytorch_model.bin")
    weights.unlink()
    one_line_error(invoke("score", write_jsonl(completions_rows(1, 1)), "-m", model, "-o", tmp_path / "o"),
                   "pickle", "--allow-pickle")


def test_bad_option_values(write_jsonl, tmp_path):
    path = write_jsonl(completions_rows(1, 1))
    one_line_error(invoke("score", path, "-o", tmp_path / "o", "--on-overflow", "chop"), "--on-overflow")
    one_line_error(invoke("score", path, "-o", tmp_path / "o", "--shard", "3/2"), "--shard")


def test_debug_shows_the_exception(tmp_path):
    result = invoke("score", tmp_path / "nope.jsonl", "-o", tmp_path / "o", env={"RMSCORE_DEBUG": "1"})
    assert result.exit_code != 0 and result.exception is not None
    assert "input not found" in str(result.exception)


def test_models_lists_families():
    result = invoke("models")
    assert result.exit_code == 0 and "seq-cls" in result.output


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "rmscore", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "score" in out.stdout
    if shutil.which("rmscore"):
        assert subprocess.run(["rmscore", "score", "--help"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize("command, needle", [("score", "Examples"), ("models", "--model-type")])
def test_help_teaches(command, needle):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and needle in result.output


def test_token_budget_help_states_both_defaults():
    # issue 19.9: the CPU default (512) and the GPU rule, not only "from free device memory"
    text = " ".join(runner.invoke(app, ["score", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "512 on CPU" in text and "capped at 65,536" in text
