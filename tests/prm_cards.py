"""The model cards' reference code for each process reward model, re-implemented from the cards
at batch size 1 and independent of rmscore: what a test compares rmscore's batched numbers with.

Each *_reference(model_dir) loads the checkpoint the way its card does and returns the card's
per-sequence scoring function.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tiny_prm import ReferenceQwenPrm, qwen_config

CARD_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


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


def qwen_prm_conversation_str(tokenizer, query: str, response: list[str], system: str = CARD_SYSTEM) -> str:
    """The Qwen2.5-Math-PRM card's rendered input text, the steps ended by <extra_0>."""
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": query},
        {"role": "assistant", "content": "<extra_0>".join(response) + "<extra_0>"},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def step_tag_input_for_prm(question: str, steps: list[str]) -> str:
    """The math-shepherd card's input text: each step ends with " ки", one step per line."""
    output = "\n".join(f"{step} ки" for step in steps)
    return f"{question} {output}"


def qwen_prm_reference(model_dir: Path):
    """Qwen2.5-Math-PRM card: system + query + steps joined and ended by <extra_0>, make_step_rewards."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = ReferenceQwenPrm(qwen_config(len(tokenizer))).eval()
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))

    def score(query: str, response: list[str], system: str = CARD_SYSTEM) -> list[float]:
        conversation_str = qwen_prm_conversation_str(tokenizer, query, response, system)
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


def rlhflow_conversation(question: str, steps: list[str]) -> list[dict]:
    """prm_evaluate.py's conversation: one user turn per step, each answered by "+"."""
    conversation = []
    for k, step in enumerate(steps):
        conversation.append({"content": question + " " + step if k == 0 else step, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
    return conversation


def rlhflow_split(answer: str) -> list[str]:
    """prm_evaluate.py's step split for the Deepseek-data model."""
    return [p.strip("\n").strip() for p in answer.split("\n\n") if p != ""]
