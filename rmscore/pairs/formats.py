"""The columns of a pairs file in each --format.

  conversational  TRL's explicit-prompt conversational preference format: `prompt` is the message
                  list, `chosen` / `rejected` are one assistant message each.
  standard        TRL's explicit-prompt standard format: plain strings. A prompt must be one user
                  message (or plain text) to be a string; anything else is refused.
  simpo           SimPO's on-policy data columns: `prompt` (the user's text), `chosen` / `rejected`
                  as whole conversations (prompt messages + the answer), `all_generated_responses`
                  and `all_rm_scores` (every scored completion of the prompt, in input order).
  kto             TRL's unpaired preference format (KTOTrainer): `prompt` messages, `completion`
                  (one assistant message) and `label`: each pair gives a true row for its chosen and
                  a false row for its rejected; a completion in several pairs of its prompt with the
                  same label gives one row. Its `score` column is that completion's score.
Every pair format adds prompt_id, score_chosen, score_rejected and margin; on a combined folder
(rmscore combine) also `agreement`, the share of models whose own scores prefer chosen.

build-sft's formats (SFT_SCHEMAS), each with prompt_id and score:
  conversational     TRL's conversational language-modeling format: `messages`, the prompt's
                     messages and the answer as one assistant message
  prompt-completion  TRL's conversational prompt-completion format: `prompt` messages and a
                     `completion` list of one assistant message
"""

from __future__ import annotations

import pyarrow as pa

from rmscore.errors import InputError
from rmscore.pairs.select import Completion, Pair
from rmscore.store.output import MESSAGE

MESSAGES = pa.list_(MESSAGE)
SCORES = [("score_chosen", pa.float64()), ("score_rejected", pa.float64()), ("margin", pa.float64())]
SCHEMAS = {
    "conversational": pa.schema([("prompt_id", pa.string()), ("prompt", MESSAGES), ("chosen", MESSAGES),
                                 ("rejected", MESSAGES), *SCORES]),
    "standard": pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("chosen", pa.string()),
                           ("rejected", pa.string()), *SCORES]),
    "simpo": pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("chosen", MESSAGES),
                        ("rejected", MESSAGES), ("all_generated_responses", pa.list_(pa.string())),
                        ("all_rm_scores", pa.list_(pa.float64())), *SCORES]),
    "kto": pa.schema([("prompt_id", pa.string()), ("prompt", MESSAGES), ("completion", MESSAGES),
                      ("label", pa.bool_()), ("score", pa.float64()), ("margin", pa.float64())]),
}
AGREEMENT = pa.field("agreement", pa.float64())
SFT_SCHEMAS = {
    "conversational": pa.schema([("prompt_id", pa.string()), ("messages", MESSAGES), ("score", pa.float64())]),
    "prompt-completion": pa.schema([("prompt_id", pa.string()), ("prompt", MESSAGES), ("completion", MESSAGES),
                                    ("score", pa.float64())]),
}


def pairs_schema(fmt: str, combined: bool) -> pa.Schema:
    return SCHEMAS[fmt].append(AGREEMENT) if combined else SCHEMAS[fmt]


def pair_row(fmt: str, prompt_id: str, prompt: list[dict], pair: Pair, scored: list[Completion] | None) -> dict:
    """`scored`: every usable completion of the prompt (read by simpo only)."""
    body = BUILDERS[fmt](prompt_id, prompt, pair, scored)
    return {"prompt_id": prompt_id, **body, "score_chosen": pair.chosen.score,
            "score_rejected": pair.rejected.score, "margin": pair.margin, "agreement": pair.agreement}


def kto_rows(prompt_id: str, prompt: list[dict], pair: Pair) -> list[dict]:
    """The pair's chosen as a desirable row, its rejected as an undesirable one."""
    return [{"prompt_id": prompt_id, "prompt": prompt, "completion": _answer(c.text), "label": label,
             "score": c.score, "margin": pair.margin, "agreement": pair.agreement}
            for c, label in ((pair.chosen, True), (pair.rejected, False))]


def sft_row(fmt: str, prompt_id: str, prompt: list[dict], kept: Completion) -> dict:
    if fmt == "conversational":
        return {"prompt_id": prompt_id, "messages": prompt + _answer(kept.text), "score": kept.score}
    return {"prompt_id": prompt_id, "prompt": prompt, "completion": _answer(kept.text), "score": kept.score}


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _conversational(prompt_id: str, prompt: list[dict], pair: Pair, scored: list[Completion] | None) -> dict:
    return {"prompt": prompt, "chosen": _answer(pair.chosen.text), "rejected": _answer(pair.rejected.text)}


def _standard(prompt_id: str, prompt: list[dict], pair: Pair, scored: list[Completion] | None) -> dict:
    if len(prompt) != 1 or prompt[0]["role"] != "user":
        roles = ", ".join(m["role"] for m in prompt)
        raise InputError(
            f"prompt {prompt_id} is a conversation ({roles}); --format standard holds one plain-text prompt",
            "use --format conversational, which keeps the messages (TRL's conversational format)",
        )
    return {"prompt": prompt[0]["content"], "chosen": pair.chosen.text, "rejected": pair.rejected.text}


def _simpo(prompt_id: str, prompt: list[dict], pair: Pair, scored: list[Completion] | None) -> dict:
    # SimPO's trainer reads the conversation from chosen/rejected; `prompt` is the user's text
    # (the last user turn when the prompt has several messages).
    user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    return {
        "prompt": user,
        "chosen": prompt + _answer(pair.chosen.text),
        "rejected": prompt + _answer(pair.rejected.text),
        "all_generated_responses": [c.text for c in scored],
        "all_rm_scores": [c.score for c in scored],
    }


BUILDERS = {"conversational": _conversational, "standard": _standard, "simpo": _simpo}
