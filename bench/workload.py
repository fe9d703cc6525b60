"""The benchmark's workload, model and tokenizer: deterministic, offline, the same in every process.

K prompts x N completions with long-tailed (lognormal) token lengths. Two profiles:
  chat       performance.md §(b): prompt median ~250 and completion median ~700 tokens, totals
             clipped to [200, 4000] on GPU, all divided by 8 on CPU (presets cpu, gpu-1b, gpu-8b,
             gpu-8b-quick, gpu-tiny);
  long-tail  issue 12's CPU workload (preset cpu-long): prompt median ~190 tokens (~150 words),
             completion median ~280 tokens, each clipped to [16, 1280] tokens (~1,000 words);
             64 prompts x 5 completions come to ~190k tokens, a third of them shared prompt tokens,
             and most rows are longer than a 512-token budget.
Text is real English words (HH-RLHF vocabulary) so tokenization costs what it costs on real data.
Weights are random: throughput does not depend on them.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIALS = ["<pad>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0)
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                tie_word_embeddings=True)
CPU_SMALL = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=2, max_position_embeddings=2048)
CPU_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=2048)
CPU_LONG = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096)


@dataclass
class Preset:
    name: str
    arch: dict
    workloads: list[tuple[int, int]]  # (prompts, completions per prompt)
    scale: float = 1.0  # divides the token lengths (CPU runs shorter sequences)
    device: str = "cpu"
    dtype: str = "float32"
    budget: int | None = 4096  # rmscore's --max-tokens-per-batch (None: its default)
    fixed_batch: int = 16  # the baselines' rows per batch
    skip: list[str] = field(default_factory=list)
    profile: str = "chat"  # length distribution: chat or long-tail (see the module docstring)


PRESETS = {
    "tiny": Preset("tiny", CPU_TINY, [(3, 4), (1, 8)], scale=16.0, budget=512),  # tests, device_check --dry-run
    "cpu": Preset("cpu", CPU_SMALL, [(16, 4), (4, 16)], scale=8.0, budget=512),
    # budget None: rmscore's own default for the device (what a user gets without the flag)
    "cpu-long": Preset("cpu-long", CPU_LONG, [(64, 5)], budget=None, profile="long-tail"),
    "gpu-1b": Preset("gpu-1b", LLAMA_1B, [(64, 4), (16, 16)], device="cuda", dtype="bfloat16", budget=65536),
    "gpu-8b": Preset("gpu-8b", LLAMA_8B, [(32, 4), (8, 16)], device="cuda", dtype="bfloat16", budget=65536),
    # Half gpu-8b's rows, for bench/device_check.sh's window (its bench step has 150 s).
    "gpu-8b-quick": Preset("gpu-8b-quick", LLAMA_8B, [(16, 4), (4, 16)], device="cuda", dtype="bfloat16",
                           budget=65536),
    # bench/device_verify.sh: the packed path on a small model, compile included, in a minute.
    "gpu-tiny": Preset("gpu-tiny", CPU_SMALL, [(8, 4), (2, 16)], scale=2.0, device="cuda", dtype="bfloat16",
                       budget=16384),
}


def corpus_words() -> list[str]:
    words: list[str] = []
    with gzip.open(REPO / "data" / "hh_rlhf_harmless_base_test.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            words += (row.get("chosen_response") or "").split()
            if len(words) > 200_000:
                break
    return words


def build_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8000, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = " ".join(words)
    tok.train_from_iterator([text[i:i + 10_000] for i in range(0, len(text), 10_000)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<pad>")
    fast.chat_template = TEMPLATE
    return fast


def lengths(rng: random.Random, scale: float) -> tuple[int, int]:
    """Prompt and completion token targets: lognormal medians 250 / 700, totals in [200, 4000]."""
    while True:
        prompt = min(max(int(rng.lognormvariate(5.52, 0.8)), 20), 2000)  # e^5.52 ~ 250
        completion = min(max(int(rng.lognormvariate(6.55, 0.7)), 50), 3500)  # e^6.55 ~ 700
        if 200 <= prompt + completion <= 4000:
            return max(int(prompt / scale), 4), max(int(completion / scale), 2)


def long_tail_lengths(rng: random.Random) -> tuple[int, int]:
    """Issue 12's mix: lognormal prompt (median 190 tokens) and completion (median 280), each
    clipped to [16, 1280] tokens."""
    prompt = min(max(int(rng.lognormvariate(5.25, 0.6)), 16), 1280)  # e^5.25 ~ 190
    completion = min(max(int(rng.lognormvariate(5.63, 0.75)), 16), 1280)  # e^5.63 ~ 280
    return prompt, completion


def draw_lengths(rng: random.Random, preset: "Preset") -> tuple[int, int]:
    return long_tail_lengths(rng) if preset.profile == "long-tail" else lengths(rng, preset.scale)


def text_of(rng: random.Random, words: list[str], tokenizer, target: int) -> str:
    """Real words until the text is `target` tokens long (within a token or two)."""
    start = rng.randrange(len(words) - 4 * target - 1)
    chunk = words[start:start + 4 * target]
    ids = tokenizer(" ".join(chunk), add_special_tokens=False)["input_ids"][:target]
    return tokenizer.decode(ids)


def make_rows(preset: Preset, tokenizer, words: list[str], seed: int = 0) -> list[dict]:
    """Flat list of {prompt, completion, prompt_id} in input order: prompts' completions adjacent."""
    rng = random.Random(seed)
    rows = []
    for k_prompts, n in preset.workloads:
        for k in range(k_prompts):
            prompt_target, _ = draw_lengths(rng, preset)
            prompt = text_of(rng, words, tokenizer, prompt_target)
            for _ in range(n):
                completion = text_of(rng, words, tokenizer, draw_lengths(rng, preset)[1])
                rows.append({"prompt": prompt, "completion": completion, "prompt_id": f"n{n}-p{k}"})
    return rows


def build_model(preset: Preset, vocab_size: int, pad_id: int):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    arch = {"vocab_size": vocab_size, **preset.arch}
    config = LlamaConfig(**arch, num_labels=1, pad_token_id=pad_id, attn_implementation="sdpa")
    torch.manual_seed(0)
    dtype = getattr(torch, preset.dtype)
    with torch.device(preset.device):
        model = LlamaForSequenceClassification(config).to(dtype).eval()
    return model, config


def model_flops(config, length: int) -> float:
    """Forward FLOPs of one sequence: 2 x non-embedding parameters per token, plus causal attention
    (QK^T and PV over the keys before each query: 2 * layers * d_attn * L^2 in total)."""
    d, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * inter  # q, o; k, v; gate, up, down
    return 2.0 * layers * per_layer * length + 2.0 * layers * d * length * length
