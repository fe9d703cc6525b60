"""Tiny process reward model checkpoints, built offline with the real architectures and the real
parameter names, plus PRM test data and helpers to run `rmscore score` on them.

Each save_* writes a folder like the published checkpoint (config.json architectures included), so
rmscore loads it through the same path as the real one. The cards' reference code is in prm_cards.py.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import torch
from torch import nn

from tiny import ARCH, build_tokenizer, random_text

REPO = Path(__file__).resolve().parent.parent
STEP_TAG_TOKENS = ("ки", " -")  # " -" as one token, so encode("+ -")[1:] is [+, -] as with Mistral's tokenizer
COMMON = dict(**ARCH, max_position_embeddings=4096, tie_word_embeddings=False)


def _spread(linear: nn.Linear, seed: int) -> None:
    # Random init gives probabilities near 0.5 for every step; a wider head spreads them.
    torch.manual_seed(seed)
    with torch.no_grad():
        linear.weight.normal_(0, 1.0)


def _save(directory: Path, model, tokenizer) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _set_architecture(directory: Path, **fields) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps(config, indent=2))


def save_step_tag(directory: Path, tag_in_words: bool = True) -> Path:
    """Math-Shepherd: a Mistral causal LM; its tokenizer adds BOS and has no pad token.
    tag_in_words=False: the tag token is found only as a word of its own, so a Russian word
    holding the letters "ки" ("русский") tokenizes without it."""
    from tokenizers import AddedToken
    from transformers import MistralConfig, MistralForCausalLM

    tag, minus = STEP_TAG_TOKENS
    tokens = STEP_TAG_TOKENS if tag_in_words else (AddedToken(tag, single_word=True), minus)
    tok = build_tokenizer("llama3", extra_tokens=tokens)
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(**COMMON, vocab_size=len(tok), sliding_window=None)).eval()
    _spread(model.lm_head, 1)
    return _save(directory, model, tok)


def save_rlhflow(directory: Path) -> Path:
    """RLHFlow PRM: a Llama-3-style chat LM (template with BOS and header turns)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer("llama3")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**COMMON, vocab_size=len(tok))).eval()
    _spread(model.lm_head, 2)
    return _save(directory, model, tok)


class ReferenceQwenPrm(nn.Module):
    """The published Qwen2ForProcessRewardModel's modules: model + score MLP, token logits out."""

    def __init__(self, config):
        from transformers import Qwen2Model

        super().__init__()
        self.model = Qwen2Model(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2))

    def forward(self, input_ids):
        return (self.score(self.model(input_ids=input_ids).last_hidden_state),)  # outputs[0]: (B, T, 2)


def _save_state(directory: Path, config, state: dict, tokenizer, architecture: str, **extra) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(directory)
    _set_architecture(directory, architectures=[architecture], **extra)
    return directory


def qwen_config(vocab_size: int):
    from transformers import Qwen2Config

    return Qwen2Config(**COMMON, vocab_size=vocab_size)


def save_qwen_prm(directory: Path) -> Path:
    """Qwen2.5-Math-PRM: weights model.* + score.0.* / score.2.*, config as published (remote code)."""
    tok = build_tokenizer("chatml")
    config = qwen_config(len(tok))
    torch.manual_seed(0)
    model = ReferenceQwenPrm(config).eval()
    _spread(model.score[2], 3)
    auto_map = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    return _save_state(directory, config, model.state_dict(), tok, "Qwen2ForProcessRewardModel", auto_map=auto_map)


def save_skywork_prm(directory: Path) -> Path:
    """Skywork-o1-Open-PRM: a Qwen2 causal LM (model.*, lm_head) + v_head.summary, as trl saves it."""
    from transformers import Qwen2ForCausalLM

    tok = build_tokenizer("chatml")
    tok.bos_token = "<s>"  # the reference prepends tokenizer.bos_token as text
    config = qwen_config(len(tok))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    v_head = nn.Linear(config.hidden_size, 1)
    _spread(v_head, 4)
    state = {**model.state_dict(), "v_head.summary.weight": v_head.weight, "v_head.summary.bias": v_head.bias}
    return _save_state(directory, config, state, tok, "Qwen2ForPrmModel")


# --- running rmscore -------------------------------------------------------------------------


def score_cli(input_path: Path, model_dir: Path, out_dir: Path, *args) -> list[dict]:
    """`rmscore score` through the CLI; the output rows, in input order."""
    import pyarrow.dataset as ds
    from typer.testing import CliRunner

    from rmscore.cli import app

    argv = ["score", input_path, "-m", model_dir, "-o", out_dir, "--overwrite", "--no-progress", *args]
    result = CliRunner().invoke(app, [str(a) for a in argv], env={"RMSCORE_DEBUG": "1"})
    assert result.exit_code == 0, (result.output, result.exception)
    return ds.dataset(str(out_dir)).to_table().to_pylist()


class Calls(list):
    """Completions per forward, one entry per head call; `forwards` counts backbone calls."""

    forwards = 0


def count_backbone_rows(monkeypatch, adapter_cls) -> Calls:
    """Count, for models that adapter_cls loads, the completions scored by each forward (whatever
    the layout: padded rows, one packed row, shared prompts) and the backbone calls. One forward
    per completion means: forwards == head calls, and every completion in exactly one of them."""
    calls = Calls()
    original = adapter_cls.load.__func__

    def load(cls, cfg, hf_config):
        model = original(cls, cfg, hf_config)
        model.backbone.register_forward_hook(lambda *_: setattr(calls, "forwards", calls.forwards + 1))
        head = model.head

        def counting_head(hidden, batch):
            calls.append(len(batch))
            return head(hidden, batch)

        model.head = counting_head
        return model

    monkeypatch.setattr(adapter_cls, "load", classmethod(load))
    return calls


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- data ------------------------------------------------------------------------------------


def step_rows(n: int = 8, seed: int = 0, max_steps: int = 6) -> list[dict]:
    """prompt + steps rows with mixed step counts and lengths."""
    rng = random.Random(seed)
    return [{"prompt": random_text(rng, 3, 30),
             "steps": [random_text(rng, 1, 25 if rng.random() < 0.8 else 70) for _ in range(rng.randint(1, max_steps))]}
            for _ in range(n)]


def prm800k_rows(limit: int | None = None) -> list[dict]:
    """The PRM800K phase-1 test trajectories shipped in data/: problem + its longest rated path."""
    with gzip.open(REPO / "data" / "prm800k_phase1_test_trajectories.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit]


def prm800k_step_rows(limit: int) -> list[dict]:
    """The one-row-per-rated-step file as prompt + steps: the prefix plus the rated step."""
    with gzip.open(REPO / "data" / "prm800k_phase1_test_steps.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(limit), f)]
    return [{"prompt": r["problem"], "steps": [*r["prefix_steps"], r["step"]], "rating": r["rating"]} for r in rows]
