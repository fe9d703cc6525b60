"""A request body's shape checked against the limits before it is parsed, in time bounded by the limits.

json.loads builds every value of a body before anything can be counted, in one C call that holds
the GIL (a 28 MB list of 10M empty strings: seconds, gigabytes, and the event loop frozen). This
walks the body's strings and brackets with one regular expression and stops at the first limit
passed, so a body past a limit costs what the limit allows, never what the body holds:
  - no list holds more items than one request may have rows (413): rows, queries, completions;
  - the body holds at most VALUES_PER_ROW values per such row (413): memory stays proportional;
  - nesting is at most MAX_DEPTH deep (400): no parser or template recurses without bound;
  - no string holds a lone surrogate ("\\ud800"), which is not Unicode and cannot be encoded (400).
It checks no grammar: json.loads does that afterwards, on a body now known to be small enough.
"""

from __future__ import annotations

import re

from rmscore.serve.schemas import BadRequest

MAX_DEPTH = 32  # a request nests 6 deep (body, rows, row, messages, message, content parts)
VALUES_PER_ROW = 64  # a 10-turn conversation row has about 30
MIN_VALUES = 1 << 16
STRUCTURE = re.compile(rb'["\[\]{},]')
ESCAPED_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)  # a string's rest, escapes and all
SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
QUOTE, BACKSLASH, COMMA = ord('"'), ord("\\"), ord(",")
OPENERS = b"[{"


class TooLarge(BadRequest):
    """More rows or bytes than one request may carry: 413."""


def check(body: bytes, max_items: int) -> None:
    """Raise TooLarge or BadRequest if the body breaks a limit; return once it is known not to."""
    max_values = max(MIN_VALUES, VALUES_PER_ROW * max_items)
    items: list[int | None] = []  # per open bracket: items so far in a list, None for an object
    values, pos, search = 0, 0, STRUCTURE.search
    while match := search(body, pos):
        at, pos = match.start(), match.end()
        kind = body[at]
        if kind == QUOTE:
            pos = _string_end(body, pos)
            continue
        if kind == COMMA:
            values += 1
            if items and items[-1] is not None:
                items[-1] += 1
                if items[-1] > max_items:
                    raise TooLarge(f"a list in the body has more than {max_items} items; the limit is {max_items} "
                                   "rows in one request (--max-rows-per-request, --max-queue): split the request")
        elif kind in OPENERS:
            values += 1
            items.append(1 if kind == OPENERS[0] else None)
            if len(items) > MAX_DEPTH:
                raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels (at byte {at:,})")
        elif items:
            items.pop()
        if values > max_values:
            raise TooLarge(f"the body holds more than {max_values:,} JSON values ({VALUES_PER_ROW} per row of the "
                           f"{max_items:,}-row limit): split the request")


def _string_end(body: bytes, start: int) -> int:
    """Where the string whose first character is at `start` ends (past its closing quote)."""
    end = body.find(b'"', start)
    if end > 0 and body[end - 1] == BACKSLASH:  # an escape before that quote: read the string properly
        match = ESCAPED_REST.match(body, start)
        end = match.end() - 1 if match else -1
    if end < 0:
        return len(body)  # unterminated: json.loads says so
    if body.find(b"\\u", start, end) >= 0 and SURROGATE.search(body, start, end):
        _unicode(body[start - 1:end + 1], start)
    return end + 1


def _unicode(token: bytes, at: int) -> None:
    import json

    try:
        json.loads(token).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"a string at byte {at:,} holds a lone surrogate ({exc.object[exc.start]!a}), which is not "
                         "Unicode: send UTF-8 text") from None
    except ValueError:  # malformed: json.loads of the whole body says where
        pass
