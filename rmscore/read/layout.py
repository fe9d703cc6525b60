"""Each raw row as the Samples to score, read by the input contract (rmscore/read/contract.py).

A completions list gives one Sample per completion (completion_index = position), a pair two (side
chosen, then rejected); a steps-only row shows its steps joined by blank lines as its completion.
A row that cannot be read never raises: it becomes a Sample with `error` set, written and counted.
"""

from __future__ import annotations

from rmscore.read.contract import MISSING, Layout, Reading, RowProblem, cell, layout_of
from rmscore.read.promote import to_text
from rmscore.read.rows import RawRow
from rmscore.score.records import Sample, prompt_hash

STEP_JOIN = "\n\n"  # shows a steps-only row as text; the model reads the steps list itself


def row_samples(row: RawRow, reading: Reading) -> tuple[str | None, list[Sample]]:
    """(the row's shape or None if it has none, its samples). Never raises on bad content."""
    if row.data is None:
        return None, [_bad(row.index, 0, row.error or "the row is null, not an object with named fields")]
    if not isinstance(row.data, dict):
        return None, [_bad(row.index, 0, f"row is a {type(row.data).__name__}, not an object with named fields")]
    kind = None
    try:
        layout = layout_of(row.data, reading)
        kind = layout.kind
        if layout.steps and not reading.reads_steps:
            raise RowProblem(f"the row has a step column {layout.steps!r}, but this is an outcome reward model: "
                              "it scores whole completions")
        return kind, _expand(row.index, row.data, layout, reading)
    except RowProblem as problem:
        return kind, [_bad(row.index, 0, str(problem))]


def _expand(index: int, data: dict, layout: Layout, reading: Reading) -> list[Sample]:
    extra = {c: data.get(c) for c in layout.keep}
    steps = cell(data, layout.steps, reading, must_be_list=True) if layout.steps else None
    if layout.kind == "messages":
        conversation = _messages(cell(data, layout.completion, reading, must_be_list=True), layout.completion)
        if len(conversation) < 2:
            raise RowProblem(f"{layout.completion!r} has one message: it needs a prompt, then the assistant's answer")
        if conversation[-1]["role"] != "assistant":
            last = conversation[-1]["role"]
            raise RowProblem(f"{layout.completion!r} ends with a {last!r} turn, not the assistant's")
        prompt, is_text = conversation[:-1], False
        completions = [conversation[-1]["content"]]
        sides: list[str | None] = [None]
    elif layout.kind == "pairs":
        prompt, is_text, completions = _pair(data, layout, reading)
        sides = ["chosen", "rejected"]
    else:
        prompt, is_text = _prompt(cell(data, layout.prompt, reading), layout.prompt)
        if layout.kind == "completions":
            raw = _present(cell(data, layout.completion, reading, must_be_list=True), layout.completion)
            if not isinstance(raw, list) or not raw:
                raise RowProblem(f"{layout.completion!r} must be a non-empty list, got {_what(raw)}")
            completions = list(raw)
        else:
            completions = [cell(data, layout.completion, reading) if layout.completion else None]
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
        except RowProblem as problem:
            sample.error = str(problem)
        samples.append(sample)
    siblings = [s.completion for s in samples]
    for sample in samples:
        sample.siblings = siblings
    return samples


def _pair(data: dict, layout: Layout, reading: Reading) -> tuple[list[dict], bool, list]:
    if layout.prompt is not None:
        prompt, is_text = _prompt(cell(data, layout.prompt, reading), layout.prompt)
        return prompt, is_text, [cell(data, layout.chosen, reading), cell(data, layout.rejected, reading)]
    # Implicit prompt (TRL style): both sides are whole conversations sharing the prompt turns.
    chosen = cell(data, layout.chosen, reading, must_be_list=True)
    rejected = cell(data, layout.rejected, reading, must_be_list=True)
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise RowProblem("chosen/rejected without a prompt column must be message lists; add a prompt column")
    chosen_msgs, rejected_msgs = _messages(chosen, layout.chosen), _messages(rejected, layout.rejected)
    shared = 0
    while shared < min(len(chosen_msgs), len(rejected_msgs)) - 1 and chosen_msgs[shared] == rejected_msgs[shared]:
        shared += 1
    if shared == 0:
        raise RowProblem("chosen and rejected share no prompt turns")
    return chosen_msgs[:shared], False, [chosen_msgs[shared:], rejected_msgs[shared:]]


def _prompt(value, column: str) -> tuple[list[dict], bool]:
    value = _present(value, column)
    if isinstance(value, str):
        return [{"role": "user", "content": value}], True
    if isinstance(value, list) and value:
        return _messages(value, column), False
    raise RowProblem(f"{column!r} must be a string or a list of messages, got {_what(value)}")


def _messages(value, column: str) -> list[dict]:
    value = _present(value, column)
    if not isinstance(value, list) or not value:
        raise RowProblem(f"{column!r} must be a non-empty list of messages, got {_what(value)}")
    out = []
    for number, message in enumerate(value, 1):
        where = f"{column!r} message {number}"
        if not isinstance(message, dict):
            raise RowProblem(f"{where} is {_kind(message)}, not a {{role, content}} object")
        for key in ("role", "content"):
            if key not in message:
                raise RowProblem(f"{where} has no {key!r}")
            if not isinstance(message[key], str):
                raise RowProblem(f"{where} has {key} {_kind(message[key])}, expected text")
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
    value = _present(value, column)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value:
        last = _messages(value, column)[-1]
        if last["role"] != "assistant":
            raise RowProblem(f"{column!r} ends with a {last['role']!r} message, expected 'assistant'")
        return last["content"]
    raise RowProblem(f"{column!r} is {_kind(value)}, expected text or an assistant message")


def _steps(steps, column: str, position: int, completions: int | None) -> list[str] | None:
    """The steps of one completion; `completions` is the row's count when it has a list of them."""
    if steps is None:
        return None
    if completions is not None:
        if not isinstance(steps, list) or not all(s is None or isinstance(s, list) for s in steps):
            raise RowProblem(f"{column!r} beside completions must be one list of steps per completion, got "
                              f"{_described(steps)}: a flat list would give every completion the same "
                              "steps; nest it, or pass --steps-col '' to split each completion")
        if len(steps) != completions:
            raise RowProblem(f"{column!r} has {_count(len(steps), 'list')} of steps for "
                              f"{_count(completions, 'completion')}: give one per completion (null: split that one)")
        steps, column = steps[position], f"{column}[{position}]"
        if steps is None:
            return None
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise RowProblem(f"{column!r} must be a list of strings, got {_described(steps)}")
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
        raise RowProblem("steps is null")
    return STEP_JOIN.join(steps)


def _bad(index: int, position: int, reason: str) -> Sample:
    return Sample(index, position, None, None, False, None, error=reason)


def _present(value, column: str):
    if value is MISSING:
        raise RowProblem(f"the row has no {column!r} field")
    return value


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _what(value) -> str:
    return "an empty list" if value == [] else _kind(value)
