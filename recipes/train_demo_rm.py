"""Train the demo reward model (rmscore/data/demo-rm/) and write the demo inputs (data/demo/).

What it does
  A toy outcome reward model for demos and tests: a byte-level BPE tokenizer and a small
  LlamaForSequenceClassification, both trained here from scratch, offline, on CPU. It is saved as
  an ordinary checkpoint folder (safetensors + tokenizer + chat template), which rmscore loads like
  any other; it is the default `--model`, so a first run needs no download.

Data
  data/hh_rlhf_harmless_base_test.jsonl.gz: the 2312 harmless-base test pairs of Anthropic's
  HH-RLHF (MIT). The 4 rows whose `prompt` is null (chosen and rejected transcripts disagree before
  the last turn) are skipped. Each `\\n\\nHuman: ... \\n\\nAssistant:` prompt is parsed into
  {role, content} messages ending with a user turn; consecutive turns of one speaker are merged.
  The text is red-team material: this script prints counts and metrics only, never text.

Split rule
  A row is held out when int(sha256(str(id)), 16) % 5 == 0 (~20%; 480 of 2308 rows). Nothing
  held out is used for training, tokenizer training or model selection.

Outputs
  data/demo/hh_rlhf_heldout.jsonl.gz  the held-out pairs: prompt (messages), chosen, rejected, id;
                                      `rmscore score` reads it as pairs, `rmscore eval` as an eval set.
  data/demo/hh_rlhf_demo.jsonl        DEMO_PROMPTS held-out prompts (the first whose conversation has
                                      at most DEMO_MAX_CHARS characters), each with `completions` = the
                                      chosen and rejected responses in a seeded random order, and id.
  rmscore/data/demo-rm/               the checkpoint, with a model card (README.md) giving the numbers.

Training
  Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) on chat-templated (prompt + response)
  conversations, the reward read at the last token (<|eot_id|>), exactly where rmscore reads it.
  A training conversation longer than Settings.train_max_tokens loses its oldest prompt turns
  (whole turns, the last user turn always kept); evaluation never truncates.
  Deterministic: fixed seeds, deterministic torch algorithms, a fixed number of threads.

Reproducibility
  Same versions, same thread count, same kind of CPU: a rerun rewrites every output byte for byte
  (weights, tokenizer, config.json, data/demo/*); only the two timing figures in the card change.
  Elsewhere the tokenizer and data/demo/* still come out byte for byte, but the weights differ
  slightly: floating-point sums run in another order, and 170 AdamW steps carry the last-bit
  differences into the bfloat16 weights. The card records the environment (versions, CPU, CPU
  kernels, threads), and the recipe says at start where yours differs from the shipped model's.
  Measured on 2026-11-29 on a shared 2-core Intel Xeon VM (AVX-512; torch 2.13.0+cpu, tokenizers
  0.23.3, safetensors 0.8.0, Python 3.11.7):
  - three full runs, two under transformers 5.24.0 and one under 5.23.0, wrote identical weights,
    tokenizer and data/demo/* (config.json differs by its transformers_version field only) and the
    same accuracies (60.2% held out, 82.7% train);
  - against the weights shipped then (trained under transformers 5.23.0, the rest of the
    environment not recorded): 24 of 30 tensors, 5.6% of the 1,532,160 values, differ, by at most
    0.0047 (embeddings; 0.0039 in one norm; 0.0005 in the other matrices); the card's accuracies
    are identical. A run on another
    machine reported at most 0.0039 and 60.0% held out.
  - what moves the bits, on 3 training steps from the same initial weights: the instruction set
    (ATEN_CPU_CAPABILITY=avx2, or MKL_ENABLE_INSTRUCTIONS=AVX2: all 93 rewards and gradients differ, by
    up to 3e-7) and the thread count (1 vs 2: 81 of 93 tensors differ). The transformers version does
    not (5.23.0 and 5.24.0: the same tokenizer, initial weights and gradients, bit for bit).

Time: about 2 minutes on 2 idle CPU cores (1.6 min to train, 0.4 min to evaluate); several times
longer when other jobs share the cores (17-21 min wall, 7-10 CPU-minutes, measured 2026-11-29 with
the load average near 6).

Run from the repository root:
    python recipes/train_demo_rm.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import platform
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "hh_rlhf_harmless_base_test.jsonl.gz"
DEMO_DIR = ROOT / "data" / "demo"
MODEL_DIR = ROOT / "rmscore" / "data" / "demo-rm"  # package data: the default --model
CARD_TEMPLATE = Path(__file__).with_name("demo_rm_card.md")  # the model card, filled in with the results
DEMO_PROMPTS = 200
DEMO_MAX_CHARS = 1000  # prompt + longer response, so the demo scores in seconds

BOS, PAD, EOT = "<|begin_of_text|>", "<pad>", "<|eot_id|>"
SPECIALS = [PAD, BOS, "<|start_header_id|>", "<|end_header_id|>", EOT]
# Llama-3 layout. The template writes the BOS itself, so render with apply_chat_template(tokenize=True)
# (or tokenize the rendered text with add_special_tokens=False): tokenizer(text) adds a second BOS,
# as real Llama-3 tokenizers do.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass(frozen=True)
class Settings:
    """Chosen on a dev slice (a sixth, by another hash) of the training pairs, never on the held-out
    split, within the CPU budget:
    2 epochs (a third overfits), 256-token training conversations. An auxiliary next-token loss
    was tried and did not help."""

    seed: int = 0
    threads: int = 2
    vocab_size: int = 4096
    hidden_size: int = 160
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 448
    max_positions: int = 2048
    train_max_tokens: int = 256  # longer training conversations lose their oldest turns
    tokens_per_batch: int = 8192  # padded tokens per step (chosen + rejected sequences)
    epochs: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05


# ---------------------------------------------------------------- data


def parse_transcript(text: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:' -> user/assistant/user messages."""
    parts = TURN.split(text)
    messages: list[dict] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if messages and messages[-1]["role"] == role:  # a speaker twice in a row: one turn
            messages[-1]["content"] += "\n\n" + content.strip()
        else:
            messages.append({"role": role, "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open "Assistant:" the responses continue
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("transcript does not end with an open assistant turn after a user turn")
    return messages


def load_pairs(path: Path) -> list[dict]:
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["prompt"] is None or row["chosen_response"] is None or row["rejected_response"] is None:
                continue
            pairs.append({
                "prompt": parse_transcript(row["prompt"]), "chosen": row["chosen_response"],
                "rejected": row["rejected_response"], "id": str(row["id"]),
            })
    return pairs


def is_heldout(pair_id: str) -> bool:
    return int(hashlib.sha256(pair_id.encode()).hexdigest(), 16) % 5 == 0


def demo_rows(heldout: list[dict], count: int, seed: int) -> list[dict]:
    """Multi-completion rows from the first `count` short held-out conversations (quick to score,
    easy to read): chosen and rejected in a seeded random order."""
    rng = random.Random(seed)
    short = [p for p in heldout if conversation_chars(p) <= DEMO_MAX_CHARS]
    rows = []
    for pair in short[:count]:
        completions = [pair["chosen"], pair["rejected"]]
        rng.shuffle(completions)
        rows.append({"prompt": pair["prompt"], "completions": completions, "id": pair["id"]})
    return rows


def conversation_chars(pair: dict) -> int:
    return sum(len(m["content"]) for m in pair["prompt"]) + max(len(pair["chosen"]), len(pair["rejected"]))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the gzip bytes depend on the content only, so a rerun leaves git clean.
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


# ---------------------------------------------------------------- tokenizer and model


def train_tokenizer(pairs: list[dict], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [m["content"] for p in pairs for m in p["prompt"]] + [p[k] for p in pairs for k in ("chosen", "rejected")]
    texts += ["user", "assistant"] * 100  # role names render in every header: give them one token each
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Like Llama 3, tokenizer(text) prepends BOS; the chat template writes its own.
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(s: Settings, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads, num_key_value_heads=s.num_kv_heads,
        max_position_embeddings=s.max_positions, num_labels=1, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(s.seed)
    return LlamaForSequenceClassification(config)


def encode(tokenizer, prompt: list[dict], response: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of prompt + response as rmscore renders them; drops the oldest turns past max_tokens."""
    while True:
        conversation = [*prompt, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if max_tokens is None or len(ids) <= max_tokens or len(prompt) == 1:
            return ids
        prompt = prompt[2:] if len(prompt) > 2 else prompt[-1:]  # keep user-first alternation


# ---------------------------------------------------------------- training and evaluation


def rewards(model, sequences: list[list[int]], pad_id: int) -> torch.Tensor:
    """One reward per sequence, read at its last token. Right padding without an attention mask is
    exact for a causal model (a token never sees the pads after it), as in rmscore's forward."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences])  # (B, T)
    hidden = model.model(input_ids=ids).last_hidden_state  # (B, T, H)
    last = torch.tensor([len(s) - 1 for s in sequences])  # (B,)
    return model.score(hidden[torch.arange(len(sequences)), last])[:, 0]  # (B,)


def pair_batches(pairs: list[tuple], tokens_per_batch: int, rng: random.Random) -> list[list[tuple]]:
    """Shuffled batches of pairs of similar length, each under tokens_per_batch padded tokens."""
    order = pairs[:]
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), 256):  # sort inside chunks: little padding, still random
        chunk = sorted(order[start:start + 256], key=lambda p: max(len(p[0]), len(p[1])))
        batch: list[tuple] = []
        for pair in chunk:
            width = max(len(pair[0]), len(pair[1]))  # the widest so far: the chunk is sorted
            if batch and 2 * (len(batch) + 1) * width > tokens_per_batch:
                batches.append(batch)
                batch = []
            batch.append(pair)
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def train(model, pairs: list[tuple], s: Settings, pad_id: int) -> None:
    rng = random.Random(s.seed)
    epochs = [pair_batches(pairs, s.tokens_per_batch, rng) for _ in range(s.epochs)]
    steps = sum(len(batches) for batches in epochs)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=s.lr
    )
    warmup = max(1, int(steps * s.warmup_fraction))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: min((t + 1) / warmup, 0.5 * (1 + math.cos(math.pi * t / steps)))
    )
    model.train()
    step = 0
    for epoch, batches in enumerate(epochs):
        total, seen = 0.0, 0
        for batch in batches:
            scores = rewards(model, [x for pair in batch for x in pair], pad_id).view(-1, 2)  # (pairs, 2)
            loss = -F.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        print(f"epoch {epoch + 1}/{s.epochs}: Bradley-Terry loss {total / seen:.4f} ({step}/{steps} steps)")
    model.eval()


@torch.no_grad()
def score_all(model, sequences: list[list[int]], pad_id: int, tokens_per_batch: int) -> list[float]:
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = [0.0] * len(sequences)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(sequences[order[end]]) <= tokens_per_batch:
            end += 1
        chunk = order[start:end]
        for i, r in zip(chunk, rewards(model, [sequences[i] for i in chunk], pad_id).tolist()):
            out[i] = r
        start = end
    return out


def pairwise_accuracy(chosen: list[float], rejected: list[float]) -> float:
    """Fraction of pairs ranked right; a tie counts one half."""
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected))
    return wins / len(chosen)


def evaluate(model, tokenizer, pairs: list[dict], tokens_per_batch: int) -> float:
    """Pairwise accuracy on whole, untruncated conversations, as rmscore scores them."""
    seqs = [encode(tokenizer, p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")]
    scores = score_all(model, seqs, tokenizer.pad_token_id, tokens_per_batch)
    return pairwise_accuracy(scores[0::2], scores[1::2])


def length_baseline(train_pairs: list[dict], test_pairs: list[dict]) -> tuple[float, float]:
    """Score = +/- the response's length in characters, the sign fitted on the training pairs."""
    def acc(pairs, sign):
        return pairwise_accuracy([sign * len(p["chosen"]) for p in pairs], [sign * len(p["rejected"]) for p in pairs])

    sign = 1 if acc(train_pairs, 1) >= 0.5 else -1
    return acc(train_pairs, sign), acc(test_pairs, sign)


# ---------------------------------------------------------------- saving


def environment(s: Settings) -> dict:
    """What the weights' last bits depend on besides the code and the data: recorded in the card."""
    import safetensors
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
        "cpu": cpu_name(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "threads": s.threads,
    }


def cpu_name() -> str:
    """The CPU model: MKL and oneDNN pick their kernels, and so their summation order, by it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recorded_environment(card: str) -> dict | None:
    """The environment a model card records: the JSON block under '## Reproducibility'."""
    found = re.search(r"^## Reproducibility$.*?^```json\n(.*?)\n```", card, re.DOTALL | re.MULTILINE)
    return json.loads(found.group(1)) if found else None


def say_what_differs(before: dict | None, env: dict) -> None:
    """Byte-identical outputs need the shipped model's environment: say up front when this one differs."""
    moved = [f"{k} {before.get(k)} -> {v}" for k, v in env.items() if before is not None and before.get(k) != v]
    if moved:
        print(f"not the shipped model's environment ({'; '.join(moved)}): the weights may come out slightly "
              "different, and the held-out accuracy with them (see this script's docstring)")


def save(model, tokenizer, s: Settings) -> None:
    shutil.rmtree(MODEL_DIR, ignore_errors=True)  # no stale files from an earlier run
    tokenizer.model_max_length = s.max_positions
    # bfloat16 safetensors, as most reward models ship: half the size of fp32.
    model.to(torch.bfloat16).save_pretrained(MODEL_DIR)
    tokenizer.save_pretrained(MODEL_DIR)


def reload():
    """The checkpoint as shipped, computed in fp32 as rmscore does on CPU: the numbers we report
    describe exactly these weights."""
    from transformers import LlamaForSequenceClassification

    return LlamaForSequenceClassification.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()


def model_card(model, s: Settings, r: dict, env: dict) -> str:
    params = sum(p.numel() for p in model.parameters())
    return CARD_TEMPLATE.read_text().format(
        **asdict(s), **r, params=params, params_m=params / 1e6, settings=json.dumps(asdict(s), indent=2),
        environment=json.dumps(env, indent=2),
        heldout_pct=100 * r["heldout_accuracy"], train_pct=100 * r["train_accuracy"],
        length_train_pct=100 * r["length_train"], length_heldout_pct=100 * r["length_heldout"],
    )


def main() -> None:
    s = Settings()
    torch.set_num_threads(s.threads)
    torch.use_deterministic_algorithms(True)
    env = environment(s)
    card = MODEL_DIR / "README.md"
    say_what_differs(recorded_environment(card.read_text()) if card.is_file() else None, env)
    wall, cpu = time.perf_counter(), time.process_time()
    pairs = load_pairs(SOURCE)
    train_pairs = [p for p in pairs if not is_heldout(p["id"])]
    heldout = [p for p in pairs if is_heldout(p["id"])]
    write_jsonl(DEMO_DIR / "hh_rlhf_heldout.jsonl.gz", heldout)
    write_jsonl(DEMO_DIR / "hh_rlhf_demo.jsonl", demo_rows(heldout, DEMO_PROMPTS, s.seed))
    print(f"{len(pairs)} pairs: {len(train_pairs)} train, {len(heldout)} held out; wrote {DEMO_DIR}")

    tokenizer = train_tokenizer(train_pairs, s.vocab_size)
    model = build_model(s, tokenizer)
    print(f"tokenizer: {len(tokenizer)} tokens; model: {sum(p.numel() for p in model.parameters()):,} parameters")
    encoded = [tuple(encode(tokenizer, p["prompt"], p[side], s.train_max_tokens) for side in ("chosen", "rejected"))
               for p in train_pairs]
    train(model, encoded, s, tokenizer.pad_token_id)
    save(model, tokenizer, s)
    minutes = {"wall_min": (time.perf_counter() - wall) / 60, "cpu_min": (time.process_time() - cpu) / 60}

    shipped = reload()
    results = {
        "n_train": len(train_pairs), "n_heldout": len(heldout), "vocab": len(tokenizer), **minutes,
        "heldout_accuracy": evaluate(shipped, tokenizer, heldout, s.tokens_per_batch),
        "train_accuracy": evaluate(shipped, tokenizer, train_pairs, s.tokens_per_batch),
    }
    results["length_train"], results["length_heldout"] = length_baseline(train_pairs, heldout)
    (MODEL_DIR / "README.md").write_text(model_card(shipped, s, results, env))
    print(json.dumps(results, indent=2))
    print(f"saved {MODEL_DIR} ({sum(f.stat().st_size for f in MODEL_DIR.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
