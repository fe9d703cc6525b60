"""Rendering conversations with a checkpoint's own chat template, then tokenizing once.

`apply_chat_template(tokenize=True)` renders and then tokenizes with add_special_tokens=False:
one BOS, the one the template writes. Card code that renders with tokenize=False and then calls
tokenizer(text) gets a second BOS; `bos="double"` reproduces that on purpose.
"""

from __future__ import annotations

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
