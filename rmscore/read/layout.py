"""Which row shape an input has, and turning each raw row into the Samples to score.

Shapes, detected from the column names (each name overridable):
  prompt + completion       one completion per row
  prompt + completions      a list: one output row per completion (completion_index = position)
  messages                  a conversation whose last turn is the assistant's
  [prompt +] chosen + rejected   both sides scored (side = chosen / rejected)
  prompt + steps            process reward models: a list of step strings, no completion column
                            (the output's `completion` is the steps joined by blank lines)
A steps column beside a completion is that completion's steps (a list of strings); beside
completions, it must hold one such list per completion (a flat list would give all the same steps).
A malformed row never raises: it becomes a Sample with `error` set, which is written and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rmscore.config import ColumnMap
from rmscore.errors import InputError
from rmscore.read.promote import to_text
from rmscore.read.rows import RawRow
from rmscore.score.records import Sample, prompt_hash

SHAPES = "prompt+completion, prompt+completions, messages, [prompt+]chosen+rejected, or prompt+steps"
STEP_JOIN = "\n\n"  # shows a steps-only row as text; the model reads the steps list itself


@dataclass(frozen=True)
class Layout:
    kind: str  # completion | completions | messages | pairs
    prompt: str | None = None
    completion: str | None = None  # completion, completions or messages column
    chosen: str | None = None
    rejected: str | None = None
    steps: str | None = None
    id: str | None = None
    keep: tuple[str, ...] = ()


def detect_layout(columns: list[str], cmap: ColumnMap, keep: list[str] = ()) -> Layout:
    cols = set(columns)

    def pick(override: str | None, default: str) -> str | None:
        if override == "":
            return None  # --steps-col '': do not use a column even though one has the standard name
        if override is not None:
            if override not in cols:
                raise InputError(f"column {override!r} not found", f"the input has: {', '.join(columns)}")
            return override
        return default if default in cols else None

    prompt = pick(cmap.prompt, "prompt")
    chosen, rejected = pick(cmap.chosen, "chosen"), pick(cmap.rejected, "rejected")
    messages, completions = pick(cmap.messages, "messages"), pick(cmap.completions, "completions")
    completion = pick(cmap.completion, "completion")
    common = dict(steps=pick(cmap.steps, "steps"), id=pick(cmap.id, "prompt_id"), keep=tuple(keep))
    missing = [c for c in keep if c not in cols]
    if missing:
        raise InputError(f"--keep-columns names missing columns: {', '.join(missing)}")
    if chosen and rejected:
        if common["steps"]:
            raise InputError(f"a step column ({common['steps']!r}) cannot go with chosen/rejected rows: it would give "
                             "both sides the same steps", "pass --steps-col '' to split each side's text instead")
        return Layout("pairs", prompt=prompt, chosen=chosen, rejected=rejected, **common)
    if prompt and completions:
        return Layout("completions", prompt=prompt, completion=completions, **common)
    if prompt and completion:
        return Layout("completion", prompt=prompt, completion=completion, **common)
    if messages:
        return Layout("messages", completion=messages, **common)
    if prompt and common["steps"]:
        return Layout("steps", prompt=prompt, **common)
    raise InputError(
        f"cannot tell the row shape from the columns: {', '.join(columns)}",
        f"expected {SHAPES}; name yours with --prompt-col, --completion-col, --completions-col, "
        "--messages-col, --chosen-col/--rejected-col",
    )


def expand(row: RawRow, layout: Layout) -> list[Sample]:
    """The samples of one input row. Never raises on bad content."""
    if row.data is None:
        return [_bad(row.index, 0, row.error or "unreadable row")]
    data = row.data
    try:
        return _expand(row.index, data, layout)
    except _RowProblem as problem:
        return [_bad(row.index, 0, str(problem))]


class _RowProblem(ValueError):
    pass


def _expand(index: int, data: dict, layout: Layout) -> list[Sample]:
    extra = {c: data.get(c) for c in layout.keep}
    steps = _from_json(data.get(layout.steps), "list") if layout.steps else None
    if layout.kind == "messages":
        conversation = _messages(_field(data, layout.completion), layout.completion)
        if len(conversation) < 2:
            raise _RowProblem(f"{layout.completion!r} has one message: it needs a prompt, then the assistant's answer")
        if conversation[-1]["role"] != "assistant":
            last = conversation[-1]["role"]
            raise _RowProblem(f"{layout.completion!r} ends with a {last!r} turn, not the assistant's")
        prompt, is_text = conversation[:-1], False
        completions = [conversation[-1]["content"]]
        sides: list[str | None] = [None]
    elif layout.kind == "pairs":
        prompt, is_text, completions = _pair(data, layout)
        sides = ["chosen", "rejected"]
    else:
        prompt, is_text = _prompt(_field(data, layout.prompt), layout.prompt)
        raw = _field(data, layout.completion)
        if layout.kind == "completions":
            raw = _from_json(_present(raw, layout.completion), "list")
            if not isinstance(raw, list) or not raw:
                raise _RowProblem(f"{layout.completion!r} must be a non-empty list, got {_what(raw)}")
            completions = list(raw)
        else:
            completions = [raw]
        sides = [None] * len(completions)
    # Ids follow the kept-column text rule (rmscore/read/promote.py): 7, 7.0 and "7" are one prompt.
    prompt_id = to_text(data[layout.id]) if layout.id and data.get(layout.id) is not None else prompt_hash(prompt)
    names = _completion_names(layout, len(completions))
    samples, per_completion = [], len(completions) if layout.kind == "completions" else None
    for position, (raw_completion, side) in enumerate(zip(completions, sides)):
        sample = Sample(index, position, prompt_id, prompt, is_text, None, side, None, extra)
        try:
            sample.steps = _steps(steps, layout.steps, position, per_completion)
            sample.completion = (_steps_text(sample.steps) if layout.kind == "steps"
                                 else _completion(raw_completion, names[position]))
        except _RowProblem as problem:
            sample.error = str(problem)
        samples.append(sample)
    return samples


def _pair(data: dict, layout: Layout) -> tuple[list[dict], bool, list]:
    chosen, rejected = _field(data, layout.chosen), _field(data, layout.rejected)
    if layout.prompt is not None:
        prompt, is_text = _prompt(_field(data, layout.prompt), layout.prompt)
        return prompt, is_text, [chosen, rejected]
    # Implicit prompt (TRL style): both sides are whole conversations sharing the prompt turns.
    chosen, rejected = _from_json(chosen, "list"), _from_json(rejected, "list")
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise _RowProblem("chosen/rejected without a prompt column must be message lists; add a prompt column")
    chosen_msgs, rejected_msgs = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    shared = 0
    while shared < min(len(chosen_msgs), len(rejected_msgs)) - 1 and chosen_msgs[shared] == rejected_msgs[shared]:
        shared += 1
    if shared == 0:
        raise _RowProblem("chosen and rejected share no prompt turns")
    return chosen_msgs[:shared], False, [chosen_msgs[shared:], rejected_msgs[shared:]]


def _prompt(value, column: str) -> tuple[list[dict], bool]:
    value = _from_json(_present(value, column), "messages")
    if isinstance(value, str):
        return [{"role": "user", "content": value}], True
    if isinstance(value, list) and value:
        return _messages(value, column), False
    raise _RowProblem(f"{column!r} must be a string or a list of messages, got {_what(value)}")


def _messages(value, column: str) -> list[dict]:
    value = _from_json(_present(value, column), "list")
    if not isinstance(value, list) or not value:
        raise _RowProblem(f"{column!r} must be a non-empty list of messages, got {_what(value)}")
    out = []
    for number, message in enumerate(value, 1):
        where = f"{column!r} message {number}"
        if not isinstance(message, dict):
            raise _RowProblem(f"{where} is {_kind(message)}, not a {{role, content}} object")
        for key in ("role", "content"):
            if key not in message:
                raise _RowProblem(f"{where} has no {key!r}")
            if not isinstance(message[key], str):
                raise _RowProblem(f"{where} has {key} {_kind(message[key])}, expected text")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def _completion_names(layout: Layout, count: int) -> list[str]:
    """How each completion of a row is named in a reason."""
    if layout.kind == "pairs":
        return [layout.chosen, layout.rejected]
    if layout.kind == "completions":
        return [f"{layout.completion}[{i}]" for i in range(count)]
    return [layout.completion or "completion"] * count


def _completion(value, column: str = "completion") -> str:
    value = _from_json(_present(value, column), "messages")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value:
        last = _messages(value, column)[-1]
        if last["role"] != "assistant":
            raise _RowProblem(f"{column!r} ends with a {last['role']!r} message, expected 'assistant'")
        return last["content"]
    raise _RowProblem(f"{column!r} is {_kind(value)}, expected text or an assistant message")


def _steps(steps, column: str, position: int, completions: int | None) -> list[str] | None:
    """The steps of one completion; `completions` is the row's count when it has a list of them."""
    if steps is None:
        return None
    if completions is not None:
        if not isinstance(steps, list) or not all(s is None or isinstance(s, list) for s in steps):
            raise _RowProblem(f"{column!r} beside completions must be one list of steps per completion, got "
                              f"{_described(steps)}: a flat list would give every completion the same "
                              "steps; nest it, or pass --steps-col '' to split each completion")
        if len(steps) != completions:
            raise _RowProblem(f"{column!r} has {_count(len(steps), 'list')} of steps for "
                              f"{_count(completions, 'completion')}: give one per completion (null: split that one)")
        steps, column = steps[position], f"{column}[{position}]"
        if steps is None:
            return None
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise _RowProblem(f"{column!r} must be a list of strings, got {_described(steps)}")
    return list(steps)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _described(value) -> str:
    if isinstance(value, list):
        kinds = sorted({_kind(v) for v in value})
        return f"a list of {' and '.join(kinds)}" if kinds else "an empty list"
    return _kind(value)


def _steps_text(steps: list[str] | None) -> str:
    if steps is None:
        raise _RowProblem("steps is null")
    return STEP_JOIN.join(steps)


def _bad(index: int, position: int, reason: str) -> Sample:
    return Sample(index, position, None, None, False, None, error=reason)


def _from_json(value, structure: str):
    """A list or a message given as a JSON string is read as what it encodes: CSV cells have no
    other way, and some Parquet files store chats so. `structure` "list": a column that must hold
    a list; "messages": one that holds text or messages, where only a JSON message (or a list of
    them, each with a "role" or "content") is decoded, so an answer that happens to be JSON stays text."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if structure == "list":
        return decoded if isinstance(decoded, list) else value
    items = decoded if isinstance(decoded, list) else [decoded]
    messages = items and all(isinstance(m, dict) and ("role" in m or "content" in m) for m in items)
    return decoded if messages else value


class _Missing:
    pass


_MISSING = _Missing()  # a JSON row without the field at all: said so, not called null


def _field(data: dict, column: str):
    return data.get(column, _MISSING)


def _present(value, column: str):
    if value is _MISSING:
        raise _RowProblem(f"the row has no {column!r} field")
    return value


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _what(value) -> str:
    return "an empty list" if value == [] else _kind(value)
