"""Scored rows in the shapes other tools read: OpenRLHF's /get_reward, vLLM's /classify and /pooling.

Pure functions of the engine's result rows (rmscore/score/engine.py: the columns `rmscore score` writes,
less the echoed texts), so every route returns the very numbers /v1/score returns.
"""

from __future__ import annotations

import math
import re
import time
import uuid

from rmscore.score.records import SCORED_STATUSES
from rmscore.serve.schemas import BadRequest

# End-of-turn and padding markers a policy leaves after its response (split mode strips them, and
# the tokenizer's own special tokens): the response is scored as the model's template closes it.
END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<end_of_turn>", "<eos>",
               "<|end|>", "<pad>", "<|finetune_right_pad_id|>")


def split_queries(queries: list[str], prompts: list[str] | None, tokenizer) -> tuple[list[dict], dict[int, str]]:
    """--query-format split: each query cut after its prompt into prompt + completion rows, which
    the model renders with its own chat template. Right for policies fed plain-text prompts
    (OpenRLHF without --apply_chat_template), or to let this model's template replace the policy's.
    Returns the rows and, by row, why a row cannot be split (it is answered as an invalid row)."""
    specials = getattr(tokenizer, "all_special_tokens", None) or ()  # a served judge has no tokenizer here
    markers = sorted({*END_MARKERS, *(t for t in specials if t)}, key=len, reverse=True)
    markers = (re.compile("(?:%s)*" % "|".join(map(re.escape, markers))),
               re.compile("(?:%s)*" % "|".join(re.escape(m[::-1]) for m in markers)))
    rows, invalid = [], {}
    for i, query in enumerate(queries):
        prompt = prompts[i] if prompts is not None else None
        if prompt is not None and not query.startswith(prompt):
            query = _strip(query, markers, leading=True)  # left padding of a batched decode
        if prompt is None or not query.startswith(prompt):
            invalid[i] = ("--query-format split needs `prompts`" if prompt is None
                          else "the query does not start with its prompt, so it cannot be split")
            rows.append({"prompt": prompt or "", "completion": ""})
            continue
        rows.append({"prompt": prompt, "completion": _strip(query[len(prompt):], markers)})
    return rows, invalid


def _strip(text: str, markers: tuple, leading: bool = False) -> str:
    """The text without the markers repeated at its start (leading) or end: one regular expression
    pass (the end read backwards), never a loop over a million "<pad>"s."""
    if leading:
        return text[markers[0].match(text).end():]
    return text[:len(text) - markers[1].match(text[::-1]).end()]


def reward_response(results: list[dict], unscored: float | None) -> dict:
    """OpenRLHF reads `scores` (else `rewards`), `rewards` and `extra_logs`, aligned with `query`.
    A row that cannot be scored gets `unscored` (null unless --unscored-reward), its status and why."""
    rewards = [r["score"] if r["score"] is not None else unscored for r in results]
    return {"rewards": rewards, "scores": rewards, "extra_logs": {}, "status": [r["status"] for r in results],
            "status_detail": [r["status_detail"] for r in results]}


def require_scored(results: list[dict]) -> None:
    """vLLM's routes have no per-row status: a row that cannot be scored fails the request (400),
    naming it, as vLLM does for an over-long input."""
    for i, r in enumerate(results):
        if r["status"] not in SCORED_STATUSES:
            raise BadRequest(f"input {i} cannot be scored: {r['status']}: {r['status_detail']}")


def activate(values: list[float]) -> list[float]:
    """vLLM's classify activation: sigmoid for one label, softmax over several."""
    if len(values) == 1:
        return [1 / (1 + math.exp(-values[0])) if values[0] >= 0 else math.exp(values[0]) / (1 + math.exp(values[0]))]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def classify_data(results: list[dict], use_activation: bool, is_probability: bool, labels: list[str] | None) -> list:
    """vLLM ClassificationData rows. Raw head outputs with use_activation false (what RL wants);
    a process reward model's score is already a probability and is returned as it is."""
    data = []
    for i, r in enumerate(results):
        raw = r.get("scores") or [r["score"]]
        probs = activate(raw) if use_activation and not is_probability else raw
        best = max(range(len(probs)), key=probs.__getitem__)
        label = labels[best] if labels and best < len(labels) else f"LABEL_{best}"
        data.append({"index": i, "label": label, "probs": probs, "num_classes": len(probs)})
    return data


def step_data(results: list[dict]) -> list[dict]:
    """vLLM's STEP pooling for process reward models: one [p_bad, p_good] row per step."""
    return [{"index": i, "object": "pooling", "data": [[1 - p, p] for p in r["step_scores"]]}
            for i, r in enumerate(results)]


def envelope(kind: str, model: str, data: list, results: list[dict]) -> dict:
    tokens = sum(r["num_tokens"] or 0 for r in results)
    return {"id": f"{kind}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}
