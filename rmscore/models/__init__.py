"""The registry of reward-model families: name -> adapter, imported only when needed.

`--model-type auto` asks each adapter, most specific first, whether config.json is one of its
checkpoints. Adding a family is one module and one line here.
"""

from __future__ import annotations

from importlib import import_module

from rmscore.config import ModelConfig
from rmscore.errors import ModelError

# Most specific first: auto-detection takes the first adapter whose matches() says yes, and the
# generic sequence classifier must come after the custom heads built on the same architectures.
# Adapters that run checkpoint code (runs_remote_code) go last: they are the escape hatch.
ADAPTERS: dict[str, str] = {
    "armorm": "rmscore.models.armorm:ArmoRM",
    "internlm2": "rmscore.models.internlm2:InternLM2Reward",
    "deberta-pair": "rmscore.models.deberta_pair:DebertaPair",
    "nemotron": "rmscore.models.nemotron:Nemotron",
    "qwen-prm": "rmscore.models.qwen_prm:QwenPrmModel",
    "skywork-prm": "rmscore.models.skywork_prm:SkyworkPrmModel",
    "step-tag": "rmscore.models.step_tag:StepTagModel",
    "rlhflow-prm": "rmscore.models.rlhflow_prm:RlhflowPrmModel",
    "lm-judge": "rmscore.models.lm_judge:LmJudge",
    "genrm": "rmscore.models.genrm:GenRM",
    "seq-cls": "rmscore.models.seq_cls:SeqClsModel",
    "remote": "rmscore.models.remote:RemoteModel",
}
PATH_KEY = "_rmscore_path"  # added to config.json's dict so matches() can recognise known names


def get_adapter(name: str):
    from rmscore.models.base import RewardModel

    if name not in ADAPTERS:
        raise ModelError(f"unknown model type {name!r}", f"available: {', '.join(ADAPTERS)}")
    module, attr = ADAPTERS[name].split(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
        raise TypeError(f"{ADAPTERS[name]} is not a RewardModel")
    return cls


def claimants(hf_config: dict, trust_remote_code: bool = True) -> list[str]:
    """Families whose matches() says yes, in registry order."""
    return [
        name for name in ADAPTERS
        if (trust_remote_code or not get_adapter(name).runs_remote_code) and get_adapter(name).matches(hf_config)
    ]


def detect(hf_config: dict, path: str, trust_remote_code: bool = False) -> str:
    found = claimants(hf_config, trust_remote_code)
    if found:
        return found[0]
    archs = ", ".join(hf_config.get("architectures") or ["none listed"])
    if hf_config.get("auto_map"):
        raise ModelError(
            f"{path} ships its own model code ({archs}), which no native rmscore family implements",
            f"pass --trust-remote-code to run it (--model-type remote), or --model-type, one of: "
            f"{', '.join(ADAPTERS)} (see `rmscore models`)",
        )
    raise ModelError(
        f"cannot tell which reward-model family {path} is (architectures: {archs})",
        f"pass --model-type, one of: {', '.join(ADAPTERS)} (see `rmscore models`)",
    )


def step_families() -> list[str]:
    """The process reward model families: those that read a `steps` column."""
    return [name for name in ADAPTERS if get_adapter(name).reads_steps]


def check_fits(name: str, hf_config: dict, path: str) -> None:
    """Stop a forced --model-type that another family clearly owns: loading a Qwen PRM or an
    ArmoRM as a plain classifier would run, drop its head, and write plausible wrong numbers."""
    adapter = get_adapter(name)
    if adapter.runs_remote_code or adapter.matches(hf_config):
        return
    others = claimants(hf_config, trust_remote_code=False)
    if others:
        archs = ", ".join(hf_config.get("architectures") or [hf_config.get("model_type", "?")])
        raise ModelError(
            f"{path} is a checkpoint of the {others[0]} family ({archs}), not {name}",
            f"pass --model-type {others[0]} (or leave --model-type auto)",
        )


def load_model(cfg: ModelConfig, check=None):
    """Load the adapter for cfg.path; returns (model, family name). check(adapter class, name), if
    given, runs before any weights load, so a mismatched input stops the run before a long load."""
    from rmscore.models.loading import check_attention, read_hf_config

    if cfg.model_type != "auto" and not get_adapter(cfg.model_type).reads_checkpoint(cfg):
        hf_config = {PATH_KEY: cfg.path}  # nothing local to read: a judge served over HTTP
    else:
        hf_config = {**read_hf_config(cfg), PATH_KEY: cfg.path}
        check_attention(cfg, hf_config)
    if cfg.model_type == "auto":
        name = detect(hf_config, cfg.path, cfg.trust_remote_code)
    else:
        name = cfg.model_type
        if len(hf_config) > 1:
            check_fits(name, hf_config, cfg.path)
    adapter = get_adapter(name)
    if cfg.gguf_file and not adapter.loads_gguf:
        raise ModelError(f"{name} models cannot be loaded from GGUF files",
                         f"GGUF works for: {', '.join(n for n in ADAPTERS if get_adapter(n).loads_gguf)}")
    if check is not None:
        check(adapter, name)
    return adapter.load(cfg, hf_config), name
