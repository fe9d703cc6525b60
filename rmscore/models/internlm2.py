"""InternLM2 reward models (internlm/internlm2-1_8b/7b/20b-reward), natively, no remote code.

The reference appends config.reward_token_id and reads v_head = Linear(h, 1, bias=False) at that
last token. Its `get_score` renders tokenize=False then tokenizer.encode()s: the template's BOS and
the tokenizer's both land, and we reproduce those two BOS by default (--bos template: one).

The backbone is a Llama with other names and a fused QKV, converted into transformers' LlamaModel:
wqkv rows are packed per key/value head as [q_1 .. q_groups, k, v] x head_dim, the layout the
published modeling_internlm2.py unpacks with rearrange("(h gs d)", gs=groups + 2).
The reference needs left padding only because it reads [:, -1]; we read each row's own last
position, so right padding (the shared forward) is exact.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel

from rmscore.errors import ModelError, RowError
from rmscore.models import chat, loading, native
from rmscore.models.base import RewardModel
from rmscore.score.records import Encoded, Sample

RENAMES = (  # published name -> LlamaModel name (wqkv is split separately)
    (r"^model\.tok_embeddings\.", "model.embed_tokens."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
)


def llama_config(hf: dict) -> LlamaConfig:
    heads = hf["num_attention_heads"]
    return LlamaConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
        num_hidden_layers=hf["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=hf.get("num_key_value_heads") or heads, hidden_act=hf.get("hidden_act", "silu"),
        max_position_embeddings=hf.get("max_position_embeddings", 2048), rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_parameters=_rope(hf), attention_bias=bool(hf.get("bias", False)), tie_word_embeddings=False,
        pad_token_id=hf.get("pad_token_id"), bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
    )


def _rope(hf: dict) -> dict:
    """InternLM2's rope_theta / rope_scaling {type, factor} as transformers' rope_parameters."""
    rope = {"rope_type": "default", "rope_theta": float(hf.get("rope_theta", 10000.0))}
    scaling = dict(hf.get("rope_scaling") or {})
    if scaling:
        rope["rope_type"] = scaling.pop("rope_type", None) or scaling.pop("type")
        scaling.pop("type", None)
        rope.update(scaling)
    return rope


def split_wqkv(w: torch.Tensor, kv_heads: int, groups: int, head_dim: int):
    """Fused (kv_heads * (groups + 2) * head_dim, ...) rows -> q, k, v weights (or biases)."""
    packed = w.reshape(kv_heads, groups + 2, head_dim, *w.shape[1:])
    q = packed[:, :groups].reshape(kv_heads * groups * head_dim, *w.shape[1:])  # query head = kv * groups + g
    k = packed[:, groups].reshape(kv_heads * head_dim, *w.shape[1:])
    v = packed[:, groups + 1].reshape(kv_heads * head_dim, *w.shape[1:])
    return q, k, v


def convert(tensors: dict[str, torch.Tensor], config: LlamaConfig) -> dict[str, torch.Tensor]:
    """InternLM2ForRewardModel state dict -> InternLM2Weights (LlamaModel + v_head) state dict."""
    kv_heads = config.num_key_value_heads
    groups = config.num_attention_heads // kv_heads
    head_dim = config.hidden_size // config.num_attention_heads
    out = {}
    for name, tensor in tensors.items():
        if ".attention.wqkv." in name:
            prefix, kind = name.split(".attention.wqkv.")
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), split_wqkv(tensor, kv_heads, groups, head_dim)):
                out[f"{prefix}.self_attn.{proj}.{kind}"] = part.contiguous()
            continue
        for pattern, new in RENAMES:
            name = re.sub(pattern, new, name)
        out[name] = tensor
    return out


class InternLM2Weights(LlamaPreTrainedModel):
    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.v_head = nn.Linear(config.hidden_size, 1, bias=False)
        self.post_init()


class InternLM2Reward(RewardModel):
    name = "internlm2"
    summary = "InternLM2 reward models (native: weights converted into a Llama backbone, no remote code)"
    reads = "the reward token appended after the chat-templated conversation"
    outputs = "score (raw v_head value)"
    examples = "internlm/internlm2-7b-reward, internlm/internlm2-20b-reward"

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        return "InternLM2ForRewardModel" in (hf_config.get("architectures") or [])

    @classmethod
    def load(cls, cfg, hf_config):
        if "reward_token_id" not in hf_config:
            raise ModelError(f"{cfg.path} has no reward_token_id in config.json", "is it an InternLM2 reward model?")
        self = cls.begin(cfg, _tokenizer)
        self.template = chat.require_template(self.tokenizer, cfg)
        config = llama_config(hf_config)
        model, self.device = native.from_checkpoint(InternLM2Weights, cfg, config, self.device,
                                       state_dict=convert(native.read_tensors(cfg), config))
        self.backbone = model.model
        self.v_head = model.v_head.float()
        self.reward_token_id = int(hf_config["reward_token_id"])
        self.bos = cfg.bos or "double"  # the card's get_score: tokenize=False, then encode() adds a BOS
        self.pad_id = loading.pad_id(config, self.tokenizer)
        # Past max_position_embeddings, dynamic-NTK RoPE rescales by the batch's longest row:
        # scores would then depend on batching (in the reference too). Stay inside it.
        self.max_length = loading.model_max_length(hf_config, self.tokenizer)
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        conversations = [chat.conversation(s.prompt, s.completion, self.cfg.system_prompt) for s in samples]
        return self._read(chat.render(self.tokenizer, conversations))

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        return self._read([self.rendered_text(t) for t in texts])

    def _read(self, texts: list[str]) -> list[Encoded]:
        rows = [[*ids, self.reward_token_id] for ids in chat.tokenize(self.tokenizer, texts, self.bos)]
        return [Encoded(ids, [len(ids) - 1]) for ids in rows]

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        values = self.v_head(hidden.to(self.v_head.weight.device, torch.float32))  # (B, 1)
        return {"score": values[:, 0]}

    def metadata(self) -> dict:
        return {"template_hash": loading.template_hash(self.template), "bos": self.bos,
                "reward_token_id": self.reward_token_id}


def _tokenizer(cfg):
    try:
        return loading.load_tokenizer(cfg)
    except ModelError as exc:
        if cfg.trust_remote_code:
            raise
        # The published checkpoints ship InternLM2Tokenizer as remote code (tokenizer_config auto_map).
        raise ModelError(exc.message, "InternLM2 checkpoints ship their tokenizer as code: add --trust-remote-code "
                                      "(it runs only the tokenizer; the model stays rmscore's own)") from exc
