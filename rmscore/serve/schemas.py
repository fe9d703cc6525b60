"""Request bodies of every route, validated strictly: a wrong type is an error, never coerced, and
an unknown field is a 400 that names it (vLLM accepting and ignoring unknown fields is what hid its
`activation` -> `use_activation` rename from verl). Responses are plain dicts (rmscore/serve/protocols.py).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# Names callers of other servers send, and what they are called here.
RENAMED = {"activation": "use_activation", "softmax": "use_activation", "inputs": "input", "text": "input",
           "texts": "input", "queries": "query", "prompt": "prompts", "data": "rows"}


class BadRequest(Exception):
    """A body this server cannot take: answered 400 with the message."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(Strict):
    """POST /v1/score: rows of any shape `rmscore score` reads."""

    rows: list[Any]


class RewardRequest(Strict):
    """POST /get_reward, OpenRLHF's remote reward model (prompts and labels: since OpenRLHF 0.9)."""

    query: list[str]
    prompts: list[str] | None = None
    labels: list[Any] | None = None


class Message(Strict):
    role: str
    content: str


class ClassifyRequest(Strict):
    """POST /classify and /v1/classify, as vLLM's: rendered texts in `input`, or one conversation."""

    model: str | None = None
    input: str | list[str] | None = None
    messages: list[Message] | None = None
    use_activation: bool | None = None
    # Accepted as false only: the text is read as it stands, so a leading BOS is never doubled.
    add_special_tokens: bool | None = None

    @model_validator(mode="after")
    def one_input(self):
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of `input` (rendered text) and `messages` (a conversation)")
        if self.input == [] or self.messages == []:
            raise ValueError("`input` or `messages` is an empty list: nothing to score")
        if self.add_special_tokens:
            raise ValueError("add_special_tokens true is not supported: rmscore reads `input` as the chat template "
                             "rendered it (its BOS included) and adds none; send false or leave it out")
        return self


class PoolingRequest(ClassifyRequest):
    """POST /pooling: task token_classify (process reward models: one row per step) or classify."""

    task: Literal["token_classify", "classify"] = "token_classify"


def parse(model: type[Strict], body: bytes) -> Strict:
    """The body as `model`, or BadRequest saying in one line what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {json_kind(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def json_kind(value) -> str:
    """What a parsed JSON value was, in JSON's words (null, not NoneType)."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return kinds.get(type(value), "a JSON value")


def describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        hints = [RENAMED[name] for name in unknown if name in RENAMED]
        text = f"unknown field(s): {', '.join(unknown)}"
        return text + (f" (did you mean {', '.join(hints)}?)" if hints else "")
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}" if e["type"] != "missing" else f"{where}: missing")
    return "; ".join(parts)
