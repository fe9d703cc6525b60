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
ADAPTERS: dict[str, str] = {
    "qwen-prm": "rmscore.models.qwen_prm:QwenPrmModel",
    "skywork-prm": "rmscore.models.skywork_prm:SkyworkPrmModel",
    "step-tag": "rmscore.models.step_tag:StepTagModel",
    "rlhflow-prm": "rmscore.models.rlhflow_prm:RlhflowPrmModel",
    "seq-cls": "rmscore.models.seq_cls:SeqClsModel",
}


def get_adapter(name: str):
    from rmscore.models.base import RewardModel

    if name not in ADAPTERS:
        raise ModelError(f"unknown model type {name!r}", f"available: {', '.join(ADAPTERS)}")
    module, attr = ADAPTERS[name].split(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
        raise TypeError(f"{ADAPTERS[name]} is not a RewardModel")
    return cls


def detect(hf_config: dict, path: str) -> str:
    for name in ADAPTERS:
        if get_adapter(name).matches(hf_config):
            return name
    archs = ", ".join(hf_config.get("architectures") or ["none listed"])
    raise ModelError(
        f"cannot tell which reward-model family {path} is (architectures: {archs})",
        f"pass --model-type, one of: {', '.join(ADAPTERS)} (see `rmscore models`)",
    )


def step_families() -> list[str]:
    """The process reward model families: those that read a `steps` column."""
    return [name for name in ADAPTERS if get_adapter(name).reads_steps]


def load_model(cfg: ModelConfig, check=None):
    """Load the adapter for cfg.path; returns (model, family name). check(adapter class, name), if
    given, runs before any weights load, so a mismatched input stops the run before a long load."""
    from rmscore.models.loading import read_hf_config

    hf_config = read_hf_config(cfg)
    name = detect(hf_config, cfg.path) if cfg.model_type == "auto" else cfg.model_type
    adapter = get_adapter(name)
    if check is not None:
        check(adapter, name)
    return adapter.load(cfg, hf_config), name
