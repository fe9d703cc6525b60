"""Tiny causal LMs for the lm-judge family, a tiny GGUF writer, and an independent judge reference.

The reference follows what people write by hand for an LLM-as-a-judge score, one example at a
time: render the question with jinja2, apply_chat_template(add_generation_prompt=True), run the
whole model, take the last position's logits and compare the two answer tokens. It never calls
rmscore.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tiny import ARCH, build_tokenizer

TEMPLATE = "Question: {{ prompt }}\nAnswer: {{ completion }}\nIs the answer right? Reply Yes or No."
COMMON = dict(**ARCH, max_position_embeddings=2048, tie_word_embeddings=False)


def save_causal_judge(directory: Path, arch: str = "llama", style: str = "llama3", seed: int = 0, **extra) -> Path:
    """A tiny *ForCausalLM whose tokenizer has "Yes" and "No" as single tokens."""
    from transformers import (
        Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
    )

    classes = {"llama": (LlamaConfig, LlamaForCausalLM, {}), "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
               "gemma2": (Gemma2Config, Gemma2ForCausalLM, {"head_dim": 8, "sliding_window": 64})}
    config_cls, model_cls, arch_extra = classes[arch]
    tokenizer = build_tokenizer(style, extra_tokens=("Yes", "No"))
    torch.manual_seed(seed)
    model = model_cls(config_cls(**COMMON, **arch_extra, **extra, vocab_size=len(tokenizer))).eval()
    with torch.no_grad():  # random init gives P(Yes) ~ 0.5 everywhere; a wider head spreads the scores
        model.lm_head.weight.normal_(0, 1.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def judge_reference(model, tokenizer, template: str = TEMPLATE, words=("Yes", "No"), system: str | None = None):
    """score(prompt, completion) -> (P(pos) / (P(pos) + P(neg)), logit(pos) - logit(neg)), batch size 1."""
    import jinja2

    pos, neg = (tokenizer.convert_tokens_to_ids(w) for w in words)

    def score(prompt: str, completion: str) -> tuple[float, float]:
        question = jinja2.Template(template).render(prompt=prompt, completion=completion)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].double()  # (V,)
        p_pos, p_neg = logits.softmax(-1)[[pos, neg]].tolist()
        return p_pos / (p_pos + p_neg), (logits[pos] - logits[neg]).item()

    return score


def save_gguf(path: Path, model, tokenizer) -> Path:
    """Write a Qwen2 causal LM and its byte-level BPE tokenizer as an F32 GGUF file, the way
    llama.cpp's converter names things (gguf-py's own tensor name map)."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    _add_tokenizer(writer, tokenizer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer, tokenizer) -> None:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    types = {i: 1 for i in by_id}  # NORMAL
    for added in spec["added_tokens"]:
        by_id[added["id"]] = added["content"]
        types[added["id"]] = 3 if added["special"] else 4  # CONTROL, USER_DEFINED (kept whole)
    ids = range(len(by_id))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list([by_id[i] for i in ids])
    writer.add_token_types([types[i] for i in ids])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)
