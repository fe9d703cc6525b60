"""The input contract: what a row means, one rule for `score`, `eval`, `serve`, Scorer and RewardFunction.

1. A string is text. JSON inside a string is decoded only where a format has no native lists: a
   CSV/TSV cell of a column that must hold a list (messages, completions, steps, the sides of a
   pair without a prompt), and the columns named with --json-columns. JSONL, JSON, Parquet,
   `datasets`, HTTP bodies and the Python API give lists as lists.
2. Each row's shape comes from its own fields (a null field counts as absent), through the column
   map; never from another row. The shapes and the fields each needs:
     completion   prompt + completion       one completion
     completions  prompt + completions      a list: one output row per completion (completion_index)
     messages     messages                  a conversation whose last turn is the assistant's
     pairs        [prompt +] chosen + rejected   both sides scored (side = chosen / rejected)
     steps        prompt + steps            process reward models: the steps as given (the output's
                                            `completion` is the steps joined by blank lines)
   A row whose fields fit two shapes is an invalid row naming both, unless an explicit column
   option picks one. Steps beside a completion, completions or messages are those completions'
   steps only when the steps column is named explicitly (beside completions: one list per
   completion); `--steps-col ''` ignores them.
3. A row that cannot be read never raises: it becomes a Sample with `error` set, written and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice

from rmscore.config import ColumnMap
from rmscore.errors import InputError
from rmscore.read.promote import to_text
from rmscore.read.rows import PEEK_ROWS, RawRow, Source
from rmscore.score.records import Sample, prompt_hash

SHAPES = {"completion": ("prompt", "completion"), "completions": ("prompt", "completions"),
          "messages": ("messages",), "pairs": ("chosen", "rejected"), "steps": ("prompt", "steps")}
SHAPE_NAMES = {"completion": "prompt+completion", "completions": "prompt+completions", "messages": "messages",
               "pairs": "[prompt+]chosen+rejected", "steps": "prompt+steps"}
SHAPES_TEXT = "prompt+completion, prompt+completions, messages, [prompt+]chosen+rejected, or prompt+steps"
ROLES = ("prompt", "completion", "completions", "messages", "chosen", "rejected", "steps")
STEP_JOIN = "\n\n"  # shows a steps-only row as text; the model reads the steps list itself


@dataclass(frozen=True)
class Reading:
    """How the rows of one input are read: column names, which columns hold JSON text, what to keep."""

    columns: ColumnMap = field(default_factory=ColumnMap)
    json_columns: frozenset[str] = frozenset()  # --json-columns: text cells decoded as JSON
    text_cells: bool = False  # CSV/TSV: every cell is text, so a list column holds JSON
    keep: tuple[str, ...] = ()
    reads_steps: bool = True  # False for outcome reward models: a row with steps is refused

    def name(self, role: str) -> str | None:
        """The column of a role: the explicit option, else the standard name; '' turns it off."""
        given = getattr(self.columns, role)
        return (role if role != "id" else "prompt_id") if given is None else (given or None)

    def explicit(self, role: str) -> bool:
        return bool(getattr(self.columns, role))


@dataclass(frozen=True)
class Layout:
    """The shape of one row and the columns it is read from."""

    kind: str  # completion | completions | messages | pairs | steps
    prompt: str | None = None
    completion: str | None = None  # completion, completions or messages column
    chosen: str | None = None
    rejected: str | None = None
    steps: str | None = None
    id: str | None = None
    keep: tuple[str, ...] = ()


def reading_of(source: Source, columns: ColumnMap, keep: list[str] = (), json_columns: list[str] = ()) -> Reading:
    """The Reading of an opened input, with every option checked against it before any model loads:
    a named column must exist in some row, and some of the first rows must have a known shape."""
    reading = Reading(columns, frozenset(json_columns), source.text_cells, tuple(keep))
    have = set(source.columns)
    where = f"the input has: {', '.join(source.columns)}"
    for role in (*ROLES, "id"):
        name = getattr(columns, role)
        if name and name not in have:
            raise InputError(f"column {name!r} not found{source.searched}", where)
    for option, names in (("--keep-columns", keep), ("--json-columns", json_columns)):
        missing = [c for c in names if c not in have]
        if missing:
            raise InputError(f"{option} names missing columns: {', '.join(missing)}{source.searched}", where)
    shapes = first_shapes(source, reading)
    if not any(isinstance(kind, str) for kind in shapes):  # every row would be refused: say so before loading
        told = next((str(p) for p in shapes if not isinstance(p, _NoShape)), None)
        if told:
            raise InputError(f"no row of the first {len(shapes):,} can be scored; the first says: {told}")
        raise InputError(f"cannot tell the row shape from the columns: {', '.join(source.columns)}",
                         f"expected {SHAPES_TEXT}; name yours with --prompt-col, --completion-col, "
                         "--completions-col, --messages-col, --chosen-col/--rejected-col, --steps-col")
    return reading


def first_shapes(source: Source, reading: Reading) -> list:
    """The shape of each of the first readable rows, or why it has none (a _RowProblem)."""
    shapes = []
    for row in islice(source.rows(), PEEK_ROWS):
        if isinstance(row.data, dict):
            try:
                shapes.append(layout_of(row.data, reading).kind)
            except _RowProblem as problem:
                shapes.append(problem)
    return shapes


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
            raise _RowProblem(f"the row has a step column {layout.steps!r}, but this is an outcome reward model: "
                              "it scores whole completions")
        return kind, _expand(row.index, row.data, layout, reading)
    except _RowProblem as problem:
        return kind, [_bad(row.index, 0, str(problem))]


def layout_of(data: dict, reading: Reading) -> Layout:
    """The shape of one row, from its own fields. Raises _RowProblem when it has none or two."""
    given = _given(data, reading)
    fits = _fits(given)
    if not fits:  # a null field: the shape its fields give, nulls included, names it in the reason
        fits = _fits(_given(data, reading, nulls=True))
        fits = [k for k in fits if k != "steps"] if len(fits) > 1 else fits
        if len(fits) != 1:
            raise _NoShape(_no_shape(data, reading))
    if fits == ["pairs"] and "steps" in given:
        raise _RowProblem(f"a step column ({reading.name('steps')!r}) cannot go with chosen/rejected: it would give "
                          "both sides the same steps (pass --steps-col '' to split each side's text)")
    if len(fits) == 1 and "steps" in given and fits[0] == "messages" and "=steps" not in given:
        fits.append("steps")  # the steps, or the split of the last turn: as ambiguous as beside a completion
    if len(fits) > 1:
        raise _RowProblem(_two_shapes(fits, reading))
    kind = fits[0]
    names = {role: reading.name(role) for role in (*ROLES, "id")}
    steps = names["steps"] if "steps" in given or kind == "steps" else None
    # A pair's prompt is optional: without one (or with a null one) both sides are whole conversations.
    prompt = None if kind == "messages" or (kind == "pairs" and data.get(names["prompt"]) is None) else names["prompt"]
    return Layout(kind, prompt=prompt,
                  completion=names.get(kind) if kind in ("completion", "completions", "messages") else None,
                  chosen=names["chosen"], rejected=names["rejected"], steps=steps, id=names["id"], keep=reading.keep)


def _given(data: dict, reading: Reading, nulls: bool = False) -> set[str]:
    """The roles the row fills (a null fills none, unless `nulls`), and "=role" for each role whose
    column was named explicitly."""
    names = {role: reading.name(role) for role in ROLES}
    filled = {role for role, name in names.items() if name in data and (nulls or data[name] is not None)}
    return filled | {f"={role}" for role in ROLES if reading.explicit(role)}


def _fits(given: set[str]) -> list[str]:
    fits = [kind for kind, needs in SHAPES.items() if all(role in given for role in needs)]
    if "pairs" in fits and "steps" in given:
        return ["pairs"]  # refused (layout_of): both sides would get the same steps
    # Steps named explicitly beside a completion are that completion's steps, not a shape of their own.
    if "=steps" in given and "steps" in fits and len(fits) > 1:
        fits.remove("steps")
    if len(fits) > 1:  # an explicit column option picks the shape it belongs to
        named = [kind for kind in fits if any(f"={role}" in given for role in SHAPES[kind] if role != "prompt")]
        fits = named if len(named) == 1 else fits
    return fits


def _two_shapes(fits: list[str], reading: Reading) -> str:
    shapes = " and ".join(SHAPE_NAMES[k] for k in fits)
    if "steps" in fits:
        return (f"the row fits two shapes, {shapes}: pass --steps-col {reading.name('steps')} to score the given "
                "steps, or --steps-col '' to split the completion text instead")
    return (f"the row fits {len(fits)} shapes, {shapes}: give it the fields of one, or name the one to score with "
            "its column option (--completion-col, --completions-col, --messages-col, --chosen-col/--rejected-col)")


def _no_shape(data: dict, reading: Reading) -> str:
    for kind, needs in SHAPES.items():
        names = [reading.name(role) for role in needs]
        if any(name in data for name in names[1:] if name) or (kind == "pairs" and names[0] in data):
            missing = next((n for n in names if n and n not in data), None)
            if missing:
                return f"the row has no {missing!r} field"
    fields = ", ".join(map(repr, data)) or "none"
    return f"cannot tell the row shape from its fields ({fields}): expected {SHAPES_TEXT}"


class _RowProblem(ValueError):
    pass


class _NoShape(_RowProblem):
    pass


def _expand(index: int, data: dict, layout: Layout, reading: Reading) -> list[Sample]:
    extra = {c: data.get(c) for c in layout.keep}
    steps = _cell(data, layout.steps, reading, must_be_list=True) if layout.steps else None
    if layout.kind == "messages":
        conversation = _messages(_cell(data, layout.completion, reading, must_be_list=True), layout.completion)
        if len(conversation) < 2:
            raise _RowProblem(f"{layout.completion!r} has one message: it needs a prompt, then the assistant's answer")
        if conversation[-1]["role"] != "assistant":
            last = conversation[-1]["role"]
            raise _RowProblem(f"{layout.completion!r} ends with a {last!r} turn, not the assistant's")
        prompt, is_text = conversation[:-1], False
        completions = [conversation[-1]["content"]]
        sides: list[str | None] = [None]
    elif layout.kind == "pairs":
        prompt, is_text, completions = _pair(data, layout, reading)
        sides = ["chosen", "rejected"]
    else:
        prompt, is_text = _prompt(_cell(data, layout.prompt, reading), layout.prompt)
        if layout.kind == "completions":
            raw = _present(_cell(data, layout.completion, reading, must_be_list=True), layout.completion)
            if not isinstance(raw, list) or not raw:
                raise _RowProblem(f"{layout.completion!r} must be a non-empty list, got {_what(raw)}")
            completions = list(raw)
        else:
            completions = [_cell(data, layout.completion, reading) if layout.completion else None]
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


def _cell(data: dict, column: str, reading: Reading, must_be_list: bool = False):
    """A field's value. Text is decoded as JSON only in a --json-columns column, or in a CSV/TSV
    cell of a column that must hold a list: a string is text everywhere else."""
    value = data.get(column, _MISSING)
    if not isinstance(value, str):
        return value
    named = column in reading.json_columns
    if not (named or (must_be_list and reading.text_cells)):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        why = ("--json-columns names it: write text as a JSON string" if named
               else "a list in a CSV/TSV cell is written as JSON, e.g. [\"a\", \"b\"]")
        raise _RowProblem(f"{column!r} is not valid JSON ({exc.msg} at character {exc.pos + 1}; {why})") from None


def _pair(data: dict, layout: Layout, reading: Reading) -> tuple[list[dict], bool, list]:
    if layout.prompt is not None:
        prompt, is_text = _prompt(_cell(data, layout.prompt, reading), layout.prompt)
        return prompt, is_text, [_cell(data, layout.chosen, reading), _cell(data, layout.rejected, reading)]
    # Implicit prompt (TRL style): both sides are whole conversations sharing the prompt turns.
    chosen = _cell(data, layout.chosen, reading, must_be_list=True)
    rejected = _cell(data, layout.rejected, reading, must_be_list=True)
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise _RowProblem("chosen/rejected without a prompt column must be message lists; add a prompt column")
    chosen_msgs, rejected_msgs = _messages(chosen, layout.chosen), _messages(rejected, layout.rejected)
    shared = 0
    while shared < min(len(chosen_msgs), len(rejected_msgs)) - 1 and chosen_msgs[shared] == rejected_msgs[shared]:
        shared += 1
    if shared == 0:
        raise _RowProblem("chosen and rejected share no prompt turns")
    return chosen_msgs[:shared], False, [chosen_msgs[shared:], rejected_msgs[shared:]]


def _prompt(value, column: str) -> tuple[list[dict], bool]:
    value = _present(value, column)
    if isinstance(value, str):
        return [{"role": "user", "content": value}], True
    if isinstance(value, list) and value:
        return _messages(value, column), False
    raise _RowProblem(f"{column!r} must be a string or a list of messages, got {_what(value)}")


def _messages(value, column: str) -> list[dict]:
    value = _present(value, column)
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
    value = _present(value, column)
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


class _Missing:
    pass


_MISSING = _Missing()  # a JSON row without the field at all: said so, not called null


def _present(value, column: str):
    if value is _MISSING:
        raise _RowProblem(f"the row has no {column!r} field")
    return value


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _what(value) -> str:
    return "an empty list" if value == [] else _kind(value)
