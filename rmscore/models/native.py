"""Loading custom reward heads into rmscore's own modules, by their published parameter names.

ArmoRM and InternLM2-reward ship remote code that transformers 5 cannot import (or that needs
trust_remote_code). Their weights are plain safetensors, though: we declare modules whose
parameter names match the checkpoint and let transformers' from_pretrained do the loading
(sharding, dtype, device). Any missing or unexpected weight is an error, never a random init.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rmscore.config import ModelConfig
from rmscore.errors import ModelError
from rmscore.models import loading


def from_checkpoint(module_cls, cfg: ModelConfig, config, device: torch.device, state_dict: dict | None = None,
                    allow_unexpected: bool = False):
    """module_cls.from_pretrained on cfg.path (or on a converted state_dict), strictly: a missing or
    wrongly shaped weight is an error, and so is an unexpected one unless allow_unexpected (a
    head-only network ignoring the checkpoint's lm_head). Returns (model, input device)."""
    if cfg.device_map and state_dict is not None:
        raise ModelError(f"--device-map is not supported for {module_cls.__name__}",
                         "these checkpoints fit one GPU in bfloat16: drop --device-map")
    kwargs = dict(dtype=loading.resolve_dtype(cfg.dtype, device), output_loading_info=True)
    if config is not None:
        kwargs["config"] = config
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.device_map:
        kwargs["device_map"] = cfg.device_map
    try:
        if state_dict is None:
            model, info = module_cls.from_pretrained(cfg.path, revision=cfg.revision, use_safetensors=True, **kwargs)
        else:
            model, info = module_cls.from_pretrained(None, state_dict=state_dict, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load the weights of {cfg.path}: {str(exc).splitlines()[0]}") from exc
    unexpected = [] if allow_unexpected else sorted(info["unexpected_keys"])
    problems = sorted(info["missing_keys"]) + unexpected + sorted(info["mismatched_keys"])
    if problems:
        raise ModelError(
            f"{cfg.path} does not have the weights a {module_cls.__name__} needs "
            f"(missing {len(info['missing_keys'])}, unexpected {len(unexpected)}, "
            f"wrong shape {len(info['mismatched_keys'])}; first: {problems[0]})",
            "check --model-type: the checkpoint may be of another family (see `rmscore models`)",
        )
    return model, loading.place(model, cfg, device)


def safetensors_files(cfg: ModelConfig) -> list[Path]:
    """The checkpoint's weight files: a local folder, or the Hub (cached or downloaded)."""
    local = Path(cfg.path)
    if local.is_dir():
        files = sorted(local.glob("*.safetensors"))
        if not files:
            raise ModelError(f"{cfg.path} has no *.safetensors weights")
        return files
    from transformers.utils import cached_file

    def fetch(name: str, required: bool = True):
        return cached_file(cfg.path, name, revision=cfg.revision, _raise_exceptions_for_missing_entries=required)

    index = fetch("model.safetensors.index.json", required=False)
    if index is None:
        return [Path(fetch("model.safetensors"))]
    shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    return [Path(fetch(name)) for name in shards]


def read_tensors(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in safetensors_files(cfg):
        tensors.update(load_file(file))
    return tensors
