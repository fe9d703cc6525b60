"""Loading rmscore's own modules for custom-head checkpoints, by the published parameter names.

The checkpoint's remote code is never run: a family defines a transformers PreTrainedModel with the
same module names as the published one, and from_pretrained fills it from the safetensors files.
A parameter the checkpoint lacks is an error, never a silently random head.
"""

from __future__ import annotations

import torch

from rmscore.config import ModelConfig
from rmscore.errors import ModelError
from rmscore.models import loading


def load_native(network_cls, cfg: ModelConfig, device: torch.device, dtype: torch.dtype):
    """(network, input device). Unexpected keys (e.g. an unused lm_head) are ignored."""
    kwargs = loading.pretrained_kwargs(cfg, device, dtype)
    kwargs.pop("trust_remote_code")  # our own class: nothing remote to trust
    try:
        network, info = network_cls.from_pretrained(cfg.path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {cfg.path} as {network_cls.__name__}: {str(exc).splitlines()[0]}") from exc
    missing = sorted(info["missing_keys"])
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ModelError(
            f"{cfg.path} lacks weights that {network_cls.__name__} needs: {shown}",
            "check --model-type: the checkpoint is of another family (see `rmscore models`)",
        )
    return network, loading.place(network, cfg, device)
