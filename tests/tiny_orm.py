"""Tiny checkpoints of the outcome-reward-model families with custom heads or inputs, written the
way the real ones are (published parameter names, config.json keys, safetensors), plus
independent batch-size-1 re-implementations of each model card's reference snippet.

The references deliberately do not call rmscore: they follow the cards (and the published
modelling code) line by line, so a test comparing rmscore to them checks rmscore.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import LlamaConfig, LlamaModel

from tiny import ARCH, build_tokenizer

ARMORM_GATE = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
CHATML_BOS = (  # InternLM2's template shape: it writes the BOS itself
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _spread(module: nn.Module, std: float, seed: int) -> None:
    """Random init gives near-identical scores; wider weights make differences testable."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def _write_config(directory: Path, config: dict) -> None:
    (directory / "config.json").write_text(json.dumps(config, indent=2))


# --- ArmoRM ----------------------------------------------------------------------------------

class RefGating(nn.Module):
    def __init__(self, hidden, n, width, depth, temperature):
        super().__init__()
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1))
        layers, size = [], hidden
        for _ in range(depth):
            layers.append(nn.Linear(size, width))
            size = width
        layers.append(nn.Linear(size, n, bias=True))
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = torch.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return torch.softmax(x / self.temperature, dim=1) * self.logit_scale[0]


class RefArmoRM(nn.Module):
    """modeling_custom.LlamaForRewardModelWithGating, re-implemented for batch size 1."""

    def __init__(self, config: LlamaConfig, n=19, width=16, depth=3, temperature=10.0):
        super().__init__()
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, n, bias=False)
        self.reward_transform_matrix = nn.Parameter(torch.eye(n))
        self.gating = RefGating(config.hidden_size, n, width, depth, temperature)

    def forward(self, ids: list[int], pattern: list[int]):
        hidden = self.model(torch.tensor([ids])).last_hidden_state  # (1, T, H)
        gate_at = max(j for j in range(len(ids) - len(pattern) + 1) if ids[j:j + len(pattern)] == pattern)
        rewards = self.regression_layer(hidden[:, -1])  # no pad in a single row: the last token
        gating = self.gating(hidden[:, gate_at])
        score = torch.sum(gating * (rewards @ self.reward_transform_matrix), dim=1)
        return score[0].item(), rewards[0].tolist(), gating[0].tolist()


def save_armorm(directory: Path, seed: int = 0) -> Path:
    tokenizer = build_tokenizer("llama3")
    config = LlamaConfig(**ARCH, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = RefArmoRM(config).eval()
    _spread(model.regression_layer, 1.0, seed)
    _spread(model.gating, 0.7, seed + 1)
    with torch.no_grad():
        model.reward_transform_matrix.add_(torch.randn(19, 19, generator=torch.Generator().manual_seed(seed)) * 0.3)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors",
              metadata={"format": "pt"})
    _write_config(directory, {
        **config.to_dict(), "architectures": ["LlamaForRewardModelWithGating"],
        "auto_map": {"AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"},
        "num_objectives": 19, "gating_temperature": 10, "gating_hidden_dim": 16, "gating_n_hidden": 3,
    })
    tokenizer.save_pretrained(directory)
    return directory


def load_ref_armorm(directory: Path) -> tuple[RefArmoRM, object]:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    config = LlamaConfig.from_pretrained(directory)
    model = RefArmoRM(config).eval()
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model, AutoTokenizer.from_pretrained(directory)


def armorm_reference(model: RefArmoRM, tokenizer, messages: list[dict]):
    """The card: apply_chat_template(messages) (tokenize=True, one BOS) -> model(input_ids)."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    pattern = tokenizer.encode(ARMORM_GATE, add_special_tokens=False)
    with torch.no_grad():
        return model(ids, pattern)


# --- InternLM2 -------------------------------------------------------------------------------

def internlm2_config(tokenizer, heads=4, kv_heads=2) -> dict:
    return {
        "architectures": ["InternLM2ForRewardModel"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModel": "modeling_internlm2.InternLM2ForRewardModel"},
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None,
        "bias": False, "tie_word_embeddings": False, "attn_implementation": "eager",
        "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "reward_token_id": tokenizer.convert_tokens_to_ids("<reward>"),
    }


def internlm2_state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under InternLM2ForRewardModel's published names and shapes."""
    g = torch.Generator().manual_seed(seed)
    h, inter, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["hidden_size"] // cfg["num_attention_heads"]
    qkv_rows = (cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"]) * d

    def randn(*shape, std=0.15):
        return torch.randn(*shape, generator=g) * std

    sd = {"model.tok_embeddings.weight": randn(cfg["vocab_size"], h, std=1.0),
          "model.norm.weight": 1 + randn(h, std=0.1), "v_head.weight": randn(1, h, std=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd |= {p + "attention.wqkv.weight": randn(qkv_rows, h), p + "attention.wo.weight": randn(h, h),
               p + "feed_forward.w1.weight": randn(inter, h), p + "feed_forward.w3.weight": randn(inter, h),
               p + "feed_forward.w2.weight": randn(h, inter), p + "attention_norm.weight": 1 + randn(h, std=0.1),
               p + "ffn_norm.weight": 1 + randn(h, std=0.1)}
    return sd


def internlm2_hidden(sd: dict, cfg: dict, ids: list[int]) -> torch.Tensor:
    """InternLM2Model's forward for one row, straight from the published layout (fused wqkv
    unpacked with rearrange('(h gs d)', gs=groups + 2)), in plain torch. Returns (T, H)."""
    heads, kv, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    groups, d, T = heads // kv, cfg["hidden_size"] // heads, len(ids)

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d)
    freqs = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()  # (T, d)

    def rope(x):  # (heads, T, d)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = sd["model.tok_embeddings.weight"][torch.tensor(ids)]  # (T, H)
    causal = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        qkv = (rms(x, sd[p + "attention_norm.weight"]) @ sd[p + "attention.wqkv.weight"].T).view(T, kv, groups + 2, d)
        q = qkv[:, :, :groups].reshape(T, heads, d).transpose(0, 1)  # query head = kv_head * groups + g
        k = qkv[:, :, -2].transpose(0, 1).repeat_interleave(groups, dim=0)  # (heads, T, d)
        v = qkv[:, :, -1].transpose(0, 1).repeat_interleave(groups, dim=0)
        att = torch.softmax(rope(q) @ rope(k).transpose(1, 2) / d ** 0.5 + causal, dim=-1) @ v  # (heads, T, d)
        x = x + att.transpose(0, 1).reshape(T, heads * d) @ sd[p + "attention.wo.weight"].T
        m = rms(x, sd[p + "ffn_norm.weight"])
        x = x + (nn.functional.silu(m @ sd[p + "feed_forward.w1.weight"].T)
                 * (m @ sd[p + "feed_forward.w3.weight"].T)) @ sd[p + "feed_forward.w2.weight"].T
    return rms(x, sd["model.norm.weight"])


def save_internlm2(directory: Path, seed: int = 0) -> Path:
    tokenizer = build_tokenizer("llama3")
    tokenizer.chat_template = CHATML_BOS
    cfg = internlm2_config(tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(internlm2_state_dict(cfg, seed), directory / "model.safetensors", metadata={"format": "pt"})
    _write_config(directory, cfg)
    tokenizer.save_pretrained(directory)
    return directory


def internlm2_reference(directory: Path, messages: list[dict], tokenizer=None, bos: str = "double") -> float:
    """The card's get_score: render tokenize=False, tokenizer.encode() (adds a BOS: two in all),
    append the reward token, v_head at the last position. bos='template': one BOS."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(directory)
    cfg = json.loads((directory / "config.json").read_text())
    sd = load_file(directory / "model.safetensors")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = tokenizer.encode(text, add_special_tokens=(bos == "double")) + [cfg["reward_token_id"]]
    with torch.no_grad():
        return (internlm2_hidden(sd, cfg, ids)[-1] @ sd["v_head.weight"][0]).item()


# --- encoders on text pairs ------------------------------------------------------------------

def pair_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = build_tokenizer("llama3").backend_tokenizer
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", unk_token="<unk>", model_max_length=512,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def save_pair_encoder(directory: Path, arch: str = "deberta-v2", seed: int = 0) -> Path:
    from transformers import (
        BertConfig, BertForSequenceClassification, DebertaV2Config, DebertaV2ForSequenceClassification,
        RobertaConfig, RobertaForSequenceClassification,
    )

    tokenizer = pair_tokenizer()
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, num_labels=1, pad_token_id=tokenizer.pad_token_id, max_position_embeddings=512)
    if arch == "deberta-v2":  # as reward-model-deberta-v3-large-v2: relative attention, no token types
        model = DebertaV2ForSequenceClassification(DebertaV2Config(
            **common, relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
            type_vocab_size=0, pooler_hidden_size=32))
    elif arch == "bert":  # token types and a pooler inside the backbone
        model = BertForSequenceClassification(BertConfig(**common, type_vocab_size=2))
    else:  # roberta: the classifier reads <s> itself
        model = RobertaForSequenceClassification(RobertaConfig(**{**common, "max_position_embeddings": 520}))
    torch.manual_seed(seed)
    _spread(model.classifier, 1.0, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def pair_reference(model, tokenizer, question: str, answer: str) -> float:
    """The card: inputs = tokenizer(question, answer, return_tensors='pt'); model(**inputs).logits[0]."""
    inputs = tokenizer(question, answer, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0].item()


# --- Nemotron ----------------------------------------------------------------------------------

def save_causal_lm(directory: Path, seed: int = 0) -> Path:
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer("llama3")
    config = LlamaConfig(**ARCH, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    _spread(model.lm_head, 1.0, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def nemotron_reference(model, tokenizer, messages: list[dict]) -> float:
    """The card: apply_chat_template(tokenize=True, add_generation_prompt=False, return_dict=True)
    -> generate(max_new_tokens=1, output_scores=True) -> scores[0][0][0]."""
    inputs = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=1, return_dict_in_generate=True, output_scores=True,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out["scores"][0][0][0].item()


# --- a model only its own remote code can run --------------------------------------------------

REMOTE_CODE = '''
from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class TinyOutput(ModelOutput):
    score: torch.Tensor = None
    rewards: torch.Tensor = None


class TinyRemoteRM(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.heads = nn.Linear(config.hidden_size, 3, bias=False)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            last = torch.full((hidden.shape[0],), hidden.shape[1] - 1)
        else:
            last = attention_mask.sum(-1) - 1
        rewards = self.heads(hidden[torch.arange(hidden.shape[0]), last])
        return TinyOutput(score=rewards.sum(-1) * 2, rewards=rewards)
'''


def save_remote(directory: Path, seed: int = 0) -> Path:
    import importlib.util

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "modeling_tiny_remote.py").write_text(REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("tiny_remote_code", directory / "modeling_tiny_remote.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = build_tokenizer("llama3")
    config = LlamaConfig(**ARCH, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         max_position_embeddings=2048)
    torch.manual_seed(seed)
    model = module.TinyRemoteRM(config).eval()
    _spread(model.heads, 1.0, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    saved = json.loads((directory / "config.json").read_text())
    saved["auto_map"] = {"AutoModelForSequenceClassification": "modeling_tiny_remote.TinyRemoteRM"}
    _write_config(directory, saved)
    return directory, module


# --- shared test helpers ---------------------------------------------------------------------

def mixed_rows(seed: int = 0) -> list[dict]:
    """prompt + completions rows: text prompts of mixed lengths and multi-turn message prompts."""
    from tiny import completions_rows, random_text

    rng = random.Random(seed)
    rows = completions_rows(n_prompts=4, n_completions=3, seed=seed)
    for i in range(2):
        prompt = [{"role": "system", "content": random_text(rng, 2, 8)},
                  {"role": "user", "content": random_text(rng, 3, 20)},
                  {"role": "assistant", "content": random_text(rng, 3, 30)},
                  {"role": "user", "content": random_text(rng, 2, 15)}]
        rows.append({"prompt": prompt, "completions": [random_text(rng, 1, 60) for _ in range(2)], "id": f"m{i}"})
    return rows


def messages_of(row: dict, completion: str) -> list[dict]:
    prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
    return [*prompt, {"role": "assistant", "content": completion}]


def score_rows(input_path, model_dir, out_dir, budget=None, **model_kw):
    """rmscore score, the library entry point; returns (summary, rows in file order)."""
    import pyarrow.dataset as ds

    from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
    from rmscore.score.run import run_score

    batch_kw = {k: model_kw.pop(k) for k in ("max_length", "on_overflow", "max_batch_size") if k in model_kw}
    cfg = ScoreConfig(input=InputConfig(str(input_path)), output=OutputConfig(str(out_dir), overwrite=True),
                      model=ModelConfig(str(model_dir), **model_kw),
                      batch=BatchConfig(max_tokens_per_batch=budget, **batch_kw))
    summary = run_score(cfg, log=lambda *_: None)
    return summary, ds.dataset(str(out_dir)).to_table().to_pylist()


def shuffled(rows: list[dict], seed: int = 0) -> list[dict]:
    """The same rows in another order, each tagged with its original position (kept as `orig`)."""
    tagged = [{**row, "orig": i} for i, row in enumerate(rows)]
    random.Random(seed).shuffle(tagged)
    return tagged
