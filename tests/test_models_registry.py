"""--model-type auto, the mismatch guard and `rmscore models`, at the CLI where users meet them."""

import json

import pytest
from typer.testing import CliRunner

from rmscore.cli import app
from rmscore.models import PATH_KEY, check_fits, detect
from rmscore.models.base import RewardModel
from tiny import save_seq_cls
from tiny_orm import save_armorm, save_causal_lm, save_internlm2, save_pair_encoder, save_remote

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "armorm": save_armorm(root / "armo"),
        "internlm2": save_internlm2(root / "ilm"),
        "deberta-pair": save_pair_encoder(root / "oa", "deberta-v2"),
        "nemotron": save_causal_lm(root / "Llama-3.1-Nemotron-70B-Reward-HF"),
        "seq-cls": save_seq_cls(root / "sky", "llama", "llama3"),
        "remote": save_remote(root / "custom")[0],
    }


def config_of(path):
    return {**json.loads((path / "config.json").read_text()), PATH_KEY: str(path)}


def cli_error(args, *needles):
    result = runner.invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": ""})
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def test_auto_detection_picks_each_family(models):
    for family, path in models.items():
        assert detect(config_of(path), str(path), trust_remote_code=True) == family
    # a plain causal LM is nobody's: Nemotron is recognised by name, not by architecture
    anonymous = {**config_of(models["nemotron"]), PATH_KEY: "/models/some-llama"}
    with pytest.raises(Exception, match="cannot tell which"):
        detect(anonymous, "/models/some-llama")


def test_auto_says_which_family_it_picked(models, write_jsonl, tmp_path):
    path = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    result = runner.invoke(app, ["score", str(path), "-m", str(models["armorm"]), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "as armorm" in result.output


@pytest.mark.parametrize("forced, owner", [("seq-cls", "armorm"), ("seq-cls", "internlm2"),
                                           ("seq-cls", "deberta-pair"), ("armorm", "seq-cls"),
                                           ("internlm2", "armorm")])
def test_a_forced_family_that_does_not_fit_says_what_to_pass(models, write_jsonl, tmp_path, forced, owner):
    path = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    cli_error(["score", path, "-m", models[owner], "--model-type", forced, "-o", tmp_path / "o"],
              f"not {forced}", f"--model-type {owner}")


class FakeQwenPRM(RewardModel):
    name = "qwen-prm"

    @classmethod
    def matches(cls, hf_config):
        return "Qwen2ForProcessRewardModel" in (hf_config.get("architectures") or [])


def test_the_guard_is_generic_a_qwen_prm_named_as_seq_cls(monkeypatch):
    from rmscore import models as registry
    from rmscore.errors import ModelError

    monkeypatch.setitem(registry.ADAPTERS, "qwen-prm", "test_models_registry:FakeQwenPRM")
    config = {"architectures": ["Qwen2ForProcessRewardModel"], "model_type": "qwen2",
              "auto_map": {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}}
    with pytest.raises(ModelError) as err:
        check_fits("seq-cls", config, "Qwen/Qwen2.5-Math-PRM-7B")
    assert "not seq-cls" in str(err.value) and "--model-type qwen-prm" in err.value.hint
    check_fits("remote", config, "Qwen/Qwen2.5-Math-PRM-7B")  # asking for remote code is always allowed


def test_unknown_custom_code_needs_the_flag_and_lists_families(models, write_jsonl, tmp_path):
    path = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    out = cli_error(["score", path, "-m", models["remote"], "-o", tmp_path / "o"], "--trust-remote-code")
    assert "armorm" in out and "deberta-pair" in out


def test_unknown_model_type_lists_families(models, write_jsonl, tmp_path):
    path = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    cli_error(["score", path, "-m", models["seq-cls"], "--model-type", "armo", "-o", tmp_path / "o"],
              "unknown model type 'armo'", "nemotron")


def test_models_lists_every_family_with_reads_and_outputs():
    from rmscore.models import ADAPTERS

    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ADAPTERS:
        assert f"\n{name}\n" in f"\n{result.output}"
    assert result.output.count("reads:") == len(ADAPTERS) and result.output.count("outputs:") == len(ADAPTERS)
    assert "gating_output" in result.output and "vocabulary id 0" in result.output
