"""Tiny process reward model checkpoints, built offline with the real architectures and the real
parameter names, and the model cards' reference code re-implemented at batch size 1.

Each save_* writes a folder like the published checkpoint (config.json architectures included);
each reference_* is the card's own per-sequence recipe, written from the card and independent of
rmscore, so a test compares rmscore's batched numbers with what the card's code prints.
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


def save_step_tag(directory: Path) -> Path:
    """Math-Shepherd: a Mistral causal LM; its tokenizer adds BOS and has no pad token."""
    from transformers import MistralConfig, MistralForCausalLM

    tok = build_tokenizer("llama3", extra_tokens=STEP_TAG_TOKENS)
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


# --- the cards' reference code, batch size 1 --------------------------------------------------
# Each *_reference(model_dir) loads the checkpoint the way its card does and returns the card's
# per-sequence scoring function.


def step_tag_reference(model_dir: Path):
    """math-shepherd-mistral-7b-prm card: f"{question} {output}", tokenizer.encode, tag positions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    candidate_tokens = tokenizer.encode("+ -")[1:]
    step_tag_id = tokenizer.encode("ки")[-1]

    def score(question: str, output: str) -> list[float]:
        input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
        with torch.no_grad():
            logits = model(input_id).logits[:, :, candidate_tokens]
            scores = logits.softmax(dim=-1)[:, :, 0]
            return scores[input_id == step_tag_id].tolist()

    return score


def qwen_prm_reference(model_dir: Path):
    """Qwen2.5-Math-PRM card: system + query + steps joined and ended by <extra_0>, make_step_rewards."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = ReferenceQwenPrm(qwen_config(len(tokenizer))).eval()
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))

    def score(query: str, response: list[str]) -> list[float]:
        messages = [
            {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
            {"role": "user", "content": query},
            {"role": "assistant", "content": "<extra_0>".join(response) + "<extra_0>"},
        ]
        conversation_str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids)[0]
        token_masks = input_ids == tokenizer.encode("<extra_0>")[0]
        probabilities = torch.softmax(logits, dim=-1) * token_masks.unsqueeze(-1)
        sample = probabilities[0]
        return sample[sample != 0].view(-1, 2)[:, 1].tolist()

    return score


def skywork_prepare_input(problem: str, response: str, tokenizer, step_token: str = "\n"):
    """SkyworkAI/skywork-o1-prm-inference io_utils.prepare_input, as published."""
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids, reward_flags = [], [0] * len(prompt_ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    for step in response.split(step_token):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
    return prompt_ids + response_ids, reward_flags


def skywork_prm_reference(model_dir: Path):
    """Skywork card: prepare_input -> PRM_MODEL(return_probs=True) -> rewards at the flags."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = Qwen2ForCausalLM.from_pretrained(model_dir).eval()
    weights = load_file(str(model_dir / "model.safetensors"))
    v_head = nn.Linear(lm.config.hidden_size, 1)
    v_head.load_state_dict({"weight": weights["v_head.summary.weight"], "bias": weights["v_head.summary.bias"]})

    def score(problem: str, response: str, step_token: str = "\n") -> list[float]:
        input_ids, flags = skywork_prepare_input(problem, response, tokenizer, step_token)
        with torch.no_grad():
            out = lm(torch.tensor([input_ids]), output_hidden_states=True)
            value = torch.sigmoid(v_head(out.hidden_states[-1]).squeeze(-1))[0]
        return [value[i].item() for i, f in enumerate(flags) if f == 1]

    return score


def rlhflow_reference(model_dir: Path):
    """RLHFlow math-rm/prm_evaluate.py: re-score the growing conversation once per step, logits[:, -3]."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    candidate_tokens = [tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]

    def score(question: str, steps: list[str]) -> list[float]:
        conversation, scores = [], []
        for k, step in enumerate(steps):
            conversation.append({"content": question + " " + step if k == 0 else step, "role": "user"})
            conversation.append({"content": "+", "role": "assistant"})
            # transformers 5: tokenize=True returns a BatchEncoding unless return_dict=False
            input_ids = torch.tensor([tokenizer.apply_chat_template(conversation, return_dict=False)])
            with torch.no_grad():
                logits = model(input_ids).logits[:, -3, candidate_tokens]
            scores.append(logits.softmax(dim=-1)[:, 0][0].item())
        return scores

    return score


def rlhflow_split(answer: str) -> list[str]:
    """prm_evaluate.py's step split for the Deepseek-data model."""
    return [p.strip("\n").strip() for p in answer.split("\n\n") if p != ""]


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


def count_backbone_rows(monkeypatch, adapter_cls) -> list[int]:
    """Rows in each backbone forward of models that adapter_cls loads (one entry per forward)."""
    calls: list[int] = []
    original = adapter_cls.load.__func__

    def load(cls, cfg, hf_config):
        model = original(cls, cfg, hf_config)
        model.backbone.register_forward_hook(
            lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
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
