"""Loading checkpoints safely: config.json, tokenizer, weights policy, device and dtype.

Shared by every adapter so the safety rules (safetensors only, no remote code) hold everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from rmscore.config import ModelConfig
from rmscore.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Tokenizers report 1e30 when they do not know their limit; beyond this we do not believe them.
_UNKNOWN_LIMIT = 10_000_000


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelError(f"unknown --device {name!r}", "use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but CUDA is not available", "use --device cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


# Inductor's Triton flex-attention kernel needs head dim >= 16 (tl.dot); its CPU kernel does not.
FLEX_MIN_HEAD_DIM = 16


def check_attention(cfg: ModelConfig, hf_config: dict) -> None:
    """Refuse, before any weight loads, an attention backend that cannot run this model here:
    otherwise the first forward fails deep inside torch.compile, mid-run."""
    if cfg.attn_implementation != "flex_attention":
        return
    on_cuda = resolve_device(cfg.device).type == "cuda" or bool(cfg.device_map and torch.cuda.is_available())
    text = hf_config.get("text_config") or hf_config
    heads = text.get("num_attention_heads")
    head_dim = text.get("head_dim") or (text["hidden_size"] // heads if heads and text.get("hidden_size") else None)
    if on_cuda and head_dim is not None and head_dim < FLEX_MIN_HEAD_DIM:
        raise ModelError(
            f"flex attention on CUDA needs a head dimension of at least {FLEX_MIN_HEAD_DIM}; "
            f"{cfg.path} has {head_dim}",
            "drop --attn-implementation flex_attention (sdpa, the default, gives the same scores)",
        )


def read_hf_config(cfg: ModelConfig) -> dict:
    """config.json as a plain dict. Read raw, so auto-detection never runs remote code."""
    if cfg.gguf_file:
        return read_gguf_config(cfg)
    local = Path(cfg.path)
    if local.exists():
        file = local / "config.json"
        if not file.is_file():
            raise ModelError(
                f"{cfg.path} has no config.json, so it is not a model checkpoint folder",
                "point --model at a folder saved with save_pretrained, or a Hub model name",
            )
        return json.loads(file.read_text())
    from transformers.utils import cached_file

    try:
        file = cached_file(cfg.path, "config.json", revision=cfg.revision)
    except Exception as exc:
        raise ModelError(
            f"cannot find model {cfg.path!r}: {str(exc).splitlines()[0]}",
            "check the path or Hub name; offline, the model must already be in the Hugging Face cache",
        ) from exc
    return json.loads(Path(file).read_text())


def read_gguf_config(cfg: ModelConfig) -> dict:
    """The config transformers builds from a GGUF file's metadata (it has no architectures list)."""
    require_gguf()
    local = Path(cfg.path)
    if local.is_dir() and not (local / cfg.gguf_file).is_file():
        raise ModelError(f"{local / cfg.gguf_file} does not exist", "check -m and --gguf-file")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(cfg.path, gguf_file=cfg.gguf_file, revision=cfg.revision)
    except Exception as exc:
        raise ModelError(f"cannot read the GGUF file {cfg.gguf_file} in {cfg.path}: {str(exc).splitlines()[0]}",
                         "transformers reads GGUF files of the architectures it lists under 'GGUF'") from exc
    return config.to_dict()


def require_gguf() -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ModelError("reading a GGUF checkpoint needs the gguf package", "pip install 'rmscore[gguf]'")


def check_weights_policy(cfg: ModelConfig) -> None:
    """Pickle weights can run code when loaded: refuse them unless the user says otherwise.
    A GGUF file is plain tensors and metadata, never pickle."""
    local = Path(cfg.path)
    if cfg.gguf_file or not local.is_dir() or cfg.allow_pickle:
        return  # Hub checkpoints: from_pretrained(use_safetensors=True) enforces it
    names = [f.name for f in local.iterdir()]
    if any(n.endswith(".safetensors") for n in names):
        return
    if any(n.endswith(PICKLE_SUFFIXES) for n in names):
        raise ModelError(
            f"{cfg.path} has only pickle (.bin) weights, which can run arbitrary code when loaded",
            "convert them to safetensors, or pass --allow-pickle if you trust the checkpoint",
        )
    raise ModelError(f"{cfg.path} has no weight files (*.safetensors)")


def pretrained_kwargs(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> dict:
    kwargs = dict(
        dtype=dtype,
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=None if cfg.allow_pickle else True,
    )
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.device_map:
        kwargs["device_map"] = cfg.device_map
    if cfg.gguf_file:  # dequantized to `dtype` on load: a way to get weights, not a speed-up
        kwargs["gguf_file"] = cfg.gguf_file
    return kwargs


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            cfg.path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
            **({"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}),
        )
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {cfg.path}: {str(exc).splitlines()[0]}") from exc
    if cfg.chat_template:
        path = Path(cfg.chat_template)
        tokenizer.chat_template = path.read_text() if path.is_file() else cfg.chat_template
    return tokenizer


def model_max_length(hf_config: dict, tokenizer) -> int:
    limits = [hf_config.get("max_position_embeddings"), getattr(tokenizer, "model_max_length", None)]
    sane = [int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < _UNKNOWN_LIMIT]
    return min(sane) if sane else 4096


def template_hash(template: str | None) -> str | None:
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:16] if template else None


def place(model: torch.nn.Module, cfg: ModelConfig, device: torch.device) -> torch.device:
    """Move the model to its device (unless accelerate placed it) and return the input device.

    With --device-map, accelerate has spread the layers over the GPUs (pipeline order, one GPU busy
    at a time: it fits a big model, it does not speed it up) and its hooks move each layer's input
    to that layer's device. The token ids must start where the embedding table lives; the hidden
    states come out on the last layer's device, and adapters' heads move them to their own.
    """
    model.eval()
    if cfg.device_map:
        return model.get_input_embeddings().weight.device
    model.to(device)
    return device


def pad_id(config, tokenizer) -> int:
    """A valid id to right-pad with. Any id works (causal rows never see later tokens; encoders get
    a mask); prefer the checkpoint's own so inputs look like its training batches."""
    for candidate in (getattr(config, "pad_token_id", None), tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0


def label_rows(model, ids: list[int]) -> torch.nn.Linear:
    """An fp32 Linear(H, len(ids)) holding these tokens' rows of the LM head (and bias, if any)."""
    lm_head = model.get_output_embeddings()
    head = torch.nn.Linear(lm_head.in_features, len(ids), bias=lm_head.bias is not None)
    with torch.no_grad():
        head.weight.copy_(lm_head.weight[ids])
        if lm_head.bias is not None:
            head.bias.copy_(lm_head.bias[ids])
    return head.float().to(lm_head.weight.device).eval()
