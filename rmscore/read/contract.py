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
     steps        prompt + steps            process reward models: the steps as given
   A row whose fields fit two shapes is an invalid row naming both, unless an explicit column
   option picks one. Steps beside a completion, completions or messages are those completions'
   steps only when the steps column is named explicitly; `--steps-col ''` ignores them.
Turning a row of a known shape into Samples is rmscore/read/layout.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice

from rmscore.config import ColumnMap
from rmscore.errors import InputError
from rmscore.read.rows import PEEK_ROWS, Source

SHAPES = {"completion": ("prompt", "completion"), "completions": ("prompt", "completions"),
          "messages": ("messages",), "pairs": ("chosen", "rejected"), "steps": ("prompt", "steps")}
SHAPE_NAMES = {"completion": "prompt+completion", "completions": "prompt+completions", "messages": "messages",
               "pairs": "[prompt+]chosen+rejected", "steps": "prompt+steps"}
SHAPES_TEXT = "prompt+completion, prompt+completions, messages, [prompt+]chosen+rejected, or prompt+steps"
ROLES = ("prompt", "completion", "completions", "messages", "chosen", "rejected", "steps")


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
        told = next((str(p) for p in shapes if not isinstance(p, NoShape)), None)
        if told:
            raise InputError(f"no row of the first {len(shapes):,} can be scored; the first says: {told}")
        raise InputError(f"cannot tell the row shape from the columns: {', '.join(source.columns)}",
                         f"expected {SHAPES_TEXT}; name yours with --prompt-col, --completion-col, "
                         "--completions-col, --messages-col, --chosen-col/--rejected-col, --steps-col")
    return reading


def first_shapes(source: Source, reading: Reading) -> list:
    """The shape of each of the first readable rows, or why it has none (a RowProblem)."""
    shapes = []
    for row in islice(source.rows(), PEEK_ROWS):
        if isinstance(row.data, dict):
            try:
                shapes.append(layout_of(row.data, reading).kind)
            except RowProblem as problem:
                shapes.append(problem)
    return shapes


def layout_of(data: dict, reading: Reading) -> Layout:
    """The shape of one row, from its own fields. Raises RowProblem when it has none or two."""
    given = _given(data, reading)
    fits = _fits(given)
    if not fits:  # a null field: the shape its fields give, nulls included, names it in the reason
        fits = _fits(_given(data, reading, nulls=True))
        fits = [k for k in fits if k != "steps"] if len(fits) > 1 else fits
        if len(fits) != 1:
            raise NoShape(_no_shape(data, reading))
    if fits == ["pairs"] and "steps" in given:
        raise RowProblem(f"a step column ({reading.name('steps')!r}) cannot go with chosen/rejected: it would give "
                          "both sides the same steps (pass --steps-col '' to split each side's text)")
    if len(fits) == 1 and "steps" in given and fits[0] == "messages" and "=steps" not in given:
        fits.append("steps")  # the steps, or the split of the last turn: as ambiguous as beside a completion
    if len(fits) > 1:
        raise RowProblem(_two_shapes(fits, reading))
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


class RowProblem(ValueError):
    """Why one row cannot be scored: it becomes an invalid row with this reason, never an error."""


class NoShape(RowProblem):
    """The row fits no shape at all."""


def cell(data: dict, column: str, reading: Reading, must_be_list: bool = False):
    """A field's value. Text is decoded as JSON only in a --json-columns column, or in a CSV/TSV
    cell of a column that must hold a list: a string is text everywhere else."""
    value = data.get(column, MISSING)
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
        raise RowProblem(f"{column!r} is not valid JSON ({exc.msg} at character {exc.pos + 1}; {why})") from None


class _Missing:
    pass


MISSING = _Missing()  # a JSON row without the field at all: said so, not called null
