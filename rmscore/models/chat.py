"""Rendering conversations with a checkpoint's own chat template, then tokenizing once.

`apply_chat_template(tokenize=True)` renders and then tokenizes with add_special_tokens=False:
one BOS, the one the template writes. Card code that renders with tokenize=False and then calls
tokenizer(text) gets a second BOS; `bos="double"` reproduces that on purpose.
"""

from __future__ import annotations

import re

from rmscore.config import ModelConfig
from rmscore.errors import ModelError

# Llama-3.2-style templates print today's date unless date_string is given, so the same input
# would score differently tomorrow. Pin it to the Llama-3.1 template's own default.
PINNED_DATE = "26 Jul 2024"


def require_template(tokenizer, cfg: ModelConfig) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ModelError(
            f"the tokenizer of {cfg.path} has no chat template",
            "pass --chat-template FILE (a Jinja template), or --model-type for a family with its own format",
        )
    return template if isinstance(template, str) else str(template)


def with_system(prompt: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt is None or (prompt and prompt[0]["role"] == "system"):
        return prompt
    return [{"role": "system", "content": system_prompt}, *prompt]


def render(tokenizer, conversations: list[list[dict]], **template_kwargs) -> list[str]:
    kwargs = {"date_string": PINNED_DATE, **template_kwargs}
    return tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=False, **kwargs)


def tokenize(tokenizer, texts: list[str], bos: str) -> list[list[int]]:
    """One batched call into the fast tokenizer (Rust, parallel) for the whole window."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=(bos == "double"))["input_ids"]


def conversation(prompt: list[dict], completion: str, system_prompt: str | None) -> list[dict]:
    return [*with_system(prompt, system_prompt), {"role": "assistant", "content": completion}]


# Stands in for an assistant reply while probing a template for what it writes after one.
_REPLY = "\ue000"
_ASKED = "\ue001"  # and for a user message


class RenderedText:
    """Conversations a policy already rendered as text (OpenRLHF's query: its decode of prompt and
    response, special tokens kept), turned into what this model's template would have rendered.

    The text is kept as it stands; only its two ends are mended. Padding that a batched decode
    leaves around it (this tokenizer's pad token) is dropped. The end of the last turn is completed
    to what the template writes after a reply: a policy stops at its end-of-turn token, so a ChatML
    text ends with "<|im_end|>" where the template writes "<|im_end|>\\n", and a reply cut by the
    length limit has no end at all. With the same chat template on both sides, the result is the
    model's own rendering of the conversation, read where the family reads.
    """

    def __init__(self, tokenizer):
        self.end = turn_end(tokenizer)
        # A text may stop where a token of the turn's end stops (never inside "<|im_end|>").
        self.cuts = sorted({0, len(self.end), *_token_ends(tokenizer, self.end)}, reverse=True)
        pad = tokenizer.pad_token
        self.pad = pad if pad and pad != tokenizer.bos_token else None

    def __call__(self, text: str) -> str:
        if self.pad:  # measured, not sliced off one at a time: a million pads stay linear
            text = text[_run(text, self.pad):]
            text = text[:len(text) - _run(text[::-1], self.pad[::-1])]
        done = next(cut for cut in self.cuts if text.endswith(self.end[:cut]))
        return text + self.end[done:]


def _run(text: str, unit: str) -> int:
    """How many characters at the start of text are `unit` repeated."""
    return re.match(f"(?:{re.escape(unit)})*", text).end()


def turn_end(tokenizer) -> str:
    """What the chat template writes after an assistant reply ("<|eot_id|>", "<|im_end|>\\n");
    empty when the template cannot be probed."""
    probe = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _REPLY}]]
    try:
        text = render(tokenizer, probe)[0]
    except Exception:  # a template that rejects the probe: leave texts' ends as they are
        return ""
    return text[text.rindex(_REPLY) + 1:] if _REPLY in text else ""


def _token_ends(tokenizer, text: str) -> list[int]:
    if not text:
        return []
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except NotImplementedError:  # slow tokenizers have no offsets: only whole ends are recognised
        return []
    return [stop for _, stop in offsets]


def reply_opener(tokenizer) -> str:
    """What the chat template writes between a user message and the assistant's reply (ChatML:
    "<|im_end|>\\n<|im_start|>assistant\\n"): where a reply starts in a rendered conversation.
    Empty when the template cannot be probed."""
    probe = [[{"role": "user", "content": _ASKED}, {"role": "assistant", "content": _REPLY}]]
    try:
        text = render(tokenizer, probe)[0]
    except Exception:  # a template that rejects the probe
        return ""
    asked, reply = text.find(_ASKED), text.rfind(_REPLY)
    return text[asked + 1:reply] if 0 <= asked < reply else ""
