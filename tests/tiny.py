"""Tiny checkpoints of real architectures, built offline, saved like real ones.

A byte-level BPE tokenizer is trained in milliseconds on a fixed corpus (any text encodes, no
unknown tokens), wrapped as a PreTrainedTokenizerFast with the chat template of the family it
imitates, and saved with a randomly initialised model of the real architecture. Tests then load
the folder through the same code path a real checkpoint takes.
"""

from __future__ import annotations

import random
from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
    "Step 1: Natalia sold 48 clips in April and half as many in May, so 48 / 2 = 24 clips.",
    "Step 2: Altogether she sold 48 + 24 = 72 clips. The answer is: 72",
    "Human: how do I bake bread at home? Assistant: Mix flour, water, salt and yeast, knead, rest, bake.",
    "I am sorry, but I cannot help with that request. Is there something else I can do for you?",
    "Let x be a positive real number such that x^2 + 3x - 10 = 0. Then x = 2 because (x+5)(x-2) = 0.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "Paris is the capital of France; Berlin is the capital of Germany; Rome is the capital of Italy.",
]

LLAMA3 = {
    "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
    "template": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
}
CHATML = {  # Qwen2.5 style: no BOS, and a default system prompt when none is given
    "bos": None, "eos": "<|im_end|>",
    "template": (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
GEMMA = {
    "bos": "<bos>", "eos": "<eos>",
    "template": (
        "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
}
STYLES = {"llama3": LLAMA3, "chatml": CHATML, "gemma": GEMMA}
SPECIALS = [
    "<pad>", "<unk>", "<s>", "</s>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<extra_0>", "<bos>", "<eos>", "<start_of_turn>",
    "<end_of_turn>", "[CLS]", "[SEP]", "[PAD]", "<reward>",
]
ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def build_tokenizer(style: str = "llama3", vocab_size: int = 400, extra_tokens: tuple[str, ...] = ()):
    """A fast tokenizer with the specials and chat template of `style`. If the style has a BOS,
    tokenizer(text) prepends it, as real Llama/Gemma tokenizers do (the double-BOS trap)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = STYLES[style]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    if extra_tokens:
        tok.add_tokens(list(extra_tokens))
    if spec["bos"]:
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B", special_tokens=[(spec["bos"], bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"], pad_token="<pad>", unk_token="<unk>",
    )
    fast.chat_template = spec["template"]
    return fast


def seq_cls_model(arch: str, vocab_size: int, pad_token_id: int, num_labels: int = 1, seed: int = 0, **overrides):
    import torch
    from transformers import (
        Gemma2Config, Gemma2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification, Qwen2Config,
        Qwen2ForSequenceClassification,
    )

    classes = {
        "llama": (LlamaConfig, LlamaForSequenceClassification, {}),
        "qwen2": (Qwen2Config, Qwen2ForSequenceClassification, {}),
        "gemma2": (Gemma2Config, Gemma2ForSequenceClassification, {"head_dim": 8, "sliding_window": 64}),
    }
    config_cls, model_cls, extra = classes[arch]
    config = config_cls(
        **{**ARCH, **extra, **overrides}, vocab_size=vocab_size, num_labels=num_labels, pad_token_id=pad_token_id,
        max_position_embeddings=2048, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # Random init gives near-identical scores; a wider head spreads them so order is testable.
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    return model


def save_seq_cls(directory: Path, arch: str = "llama", style: str = "llama3", pad: str = "<pad>",
                 num_labels: int = 1, **overrides) -> Path:
    """Save a tiny seq-cls checkpoint. `pad` is the token whose id goes into config.pad_token_id:
    '<pad>' (a dedicated pad, the safe case) or the eos token (the pad = eos trap). `overrides`
    change the config (e.g. head_dim=16 for flex attention on CUDA)."""
    tokenizer = build_tokenizer(style)
    pad_id = tokenizer.convert_tokens_to_ids(pad)
    model = seq_cls_model(arch, len(tokenizer), pad_id, num_labels, **overrides)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


WORDS = (
    "the a reward model scores each answer carefully because length and quality vary widely across "
    "prompts completions steps math code safety helpful harmless honest 12 7 + - = 3.5 x y"
).split()


def random_text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def completions_rows(n_prompts: int = 6, n_completions: int = 4, seed: int = 0, long_tail: bool = True) -> list[dict]:
    """prompt + completions rows with a long-tailed mix of lengths."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_prompts):
        prompt = random_text(rng, 3, 40)
        outs = [random_text(rng, 1, 120 if long_tail and rng.random() < 0.2 else 25) for _ in range(n_completions)]
        rows.append({"prompt": prompt, "completions": outs, "id": f"p{i}"})
    return rows
