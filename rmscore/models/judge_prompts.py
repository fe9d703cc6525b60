"""What a generative judge (genrm) is asked, and how its verdict is read from the reply. Pure: no
torch, no network.

The default templates are MT-Bench's single-answer and pairwise judge prompts (Zheng et al. 2023,
"Judging LLM-as-a-Judge"), trimmed: the judge writes a critique, then a verdict in double brackets.
The verdict is the pattern's *last* match, so a critique that quotes the format earlier does not
count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from rmscore.errors import ConfigError

POINTWISE_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the response provided by an AI \
assistant to the user question below. Consider correctness, helpfulness, relevance, depth and clarity. Begin your \
evaluation with a short critique. Be as objective as possible. After the critique, rate the response on a scale of \
1 to 10 by strictly following this format: "Rating: [[N]]", for example: "Rating: [[5]]".

[Question]
{{ prompt }}

[The Start of the Assistant's Answer]
{{ completion }}
[The End of the Assistant's Answer]"""

PAIRWISE_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI \
assistants to the user question below. Choose the assistant that follows the user's instructions and answers the \
question better, considering correctness, helpfulness, relevance, depth and clarity. Begin your evaluation by \
comparing the two responses and give a short explanation. Do not let the order of the responses or their length \
influence your decision. After your explanation, output your final verdict by strictly following this format: \
"[[A]]" if assistant A is better, "[[B]]" if assistant B is better.

[User Question]
{{ prompt }}

[The Start of Assistant A's Answer]
{{ completion_a }}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{{ completion_b }}
[The End of Assistant B's Answer]"""

POINTWISE_PATTERN = r"Rating:\s*\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]"
PAIRWISE_PATTERN = r"\[\[\s*([AB])\s*\]\]"
# What each mode's template can use, and what it must use.
VARIABLES = {"pointwise": ({"prompt", "completion", "messages"}, {"completion"}),
             "pairwise": ({"prompt", "completion_a", "completion_b", "messages"}, {"completion_a", "completion_b"})}
TAIL = 160  # characters of a reply without a verdict kept in status_detail


def template(value: str | None, mode: str):
    """(text, compiled) of the judge template: a file, Jinja text, or the mode's default. Sandboxed
    as transformers renders chat templates; unknown variables are refused before any row is sent."""
    from jinja2 import StrictUndefined, TemplateSyntaxError, meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    default = POINTWISE_TEMPLATE if mode == "pointwise" else PAIRWISE_TEMPLATE
    is_file = value is not None and Path(value).is_file()
    text = default if value is None else Path(value).read_text() if is_file else value
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    try:
        used = meta.find_undeclared_variables(env.parse(text))
    except TemplateSyntaxError as exc:
        raise ConfigError(f"--judge-template is not valid Jinja: {exc.message} (line {exc.lineno})") from exc
    allowed, required = VARIABLES[mode]
    if used - allowed or required - used:
        what = (f"uses unknown variables {sorted(used - allowed)}" if used - allowed
                else f"never uses {', '.join('{{ %s }}' % v for v in sorted(required - used))}")
        where = "" if value is None or is_file else f" (and {value[:40]!r} is not a file)"
        raise ConfigError(f"--judge-template {what}{where}",
                          f"a {mode} judge template can use {', '.join(sorted(allowed))}")
    return text, env.from_string(text)


def pattern(value: str | None, mode: str) -> re.Pattern:
    text = value or (POINTWISE_PATTERN if mode == "pointwise" else PAIRWISE_PATTERN)
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"--verdict-pattern is not a valid regular expression: {exc}") from exc
    if compiled.groups != 1:
        raise ConfigError(f"--verdict-pattern must have exactly one capture group, it has {compiled.groups}",
                          "e.g. 'Score: (\\d+)'; use (?:...) for the other groups")
    return compiled


@dataclass(frozen=True)
class Reply:
    """One generation: its text, why it stopped ("stop", "length"), or why there is none (error)."""

    text: str | None
    finish: str | None = None
    error: str | None = None


class Unparsed(Exception):
    """No verdict in a reply: the row keeps the reply, with status `unparsed` and this reason."""


def verdict(reply: Reply, regex: re.Pattern, choices: tuple[str, ...] | None = None) -> float | str:
    """The pattern's last match in the reply: a finite number (pointwise), or one of `choices`."""
    found = regex.findall(reply.text or "")
    if not found:
        cut = ", cut at --judge-max-tokens" if reply.finish == "length" else ""
        raise Unparsed(f"no verdict in the reply (pattern {regex.pattern!r}{cut}); it ends: {tail(reply.text)!r}")
    value = found[-1].strip()
    if choices is not None:
        if value.upper() not in choices:
            raise Unparsed(f"verdict {value!r} is not one of {', '.join(choices)}")
        return value.upper()
    try:
        number = float(value)
    except ValueError:
        raise Unparsed(f"verdict {value!r} is not a number") from None
    if not math.isfinite(number):
        raise Unparsed(f"verdict {value!r} is not a finite number")
    return number


def tail(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= TAIL else "..." + text[-TAIL:]
