"""A raw input row and the Source interface every reader implements (sources.py, formats.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from rmscore.errors import InputError

PEEK_ROWS = 1000  # rows read before the model loads, to learn the columns
JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


@dataclass(slots=True)
class RawRow:
    index: int
    data: dict | None
    error: str | None = None


class Source:
    """A readable input. `columns` is known before the first row is consumed."""

    description: str
    columns: list[str]
    breaks: list[str]  # where reading broke off in the last pass over rows(), one entry per file
    shape = "one JSON object per line"  # what a readable file of this kind holds, for the error
    text_cells = False  # CSV/TSV: every cell is text (rmscore/read/contract.py decodes list columns)
    searched = ""  # where `columns` was learnt, when not from a schema or header: said in a "not found"

    def rows(self) -> Iterator[RawRow]:
        raise NotImplementedError

    @property
    def damage(self) -> str | None:
        """One line naming where the input broke off, or None when every file was read to its end."""
        breaks = getattr(self, "breaks", [])
        if not breaks:
            return None
        return breaks[0] + (f" (and {len(breaks) - 1} more files)" if len(breaks) > 1 else "")

    def _peek_columns(self) -> list[str]:
        """Every field of the first readable rows, in first-seen order (rows of one file may differ
        in fields: each row's shape is its own); a source with no readable row there is unreadable."""
        problems, columns, seen = [], {}, 0
        for seen, row in enumerate(islice(self.rows(), PEEK_ROWS), 1):
            if row.data is None:
                problems.append(row.error)
            else:
                columns.update(dict.fromkeys(row.data))
        if columns:
            self.searched = f" in the first {PEEK_ROWS:,} rows" if seen == PEEK_ROWS else ""
            return list(columns)
        first = f" (first: {problems[0]})" if problems else ""
        if self.damage:
            raise InputError(self.damage + first, "check the file: it may be truncated or not what its name says")
        raise InputError(f"{self.description} is empty or has no readable row in its first {PEEK_ROWS:,} rows{first}",
                         f"the file should hold {self.shape}")
