"""Keyword options of the Python API, checked by the typed configs `rmscore score` uses.

A command-line option --x-y is the keyword x_y (--model is the first argument, `model`): the model
options (ModelConfig) and the batching and length options (BatchConfig). Nothing is validated
here that the configs do not already validate; this module only routes keywords to them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from rmscore.config import BatchConfig, ColumnMap, ModelConfig, default_model
from rmscore.errors import ConfigError, InputError, RmscoreError

MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name != "path")
BATCH_OPTIONS = tuple(f.name for f in fields(BatchConfig))
COLUMN_NAMES = tuple(f.name for f in fields(ColumnMap))


def configs(model: str | Path | None, options: dict, owner: str) -> tuple[ModelConfig, BatchConfig]:
    """The ModelConfig and BatchConfig of `owner(model, **options)`. Unknown keywords raise
    ConfigError naming the valid ones; values are validated by the configs themselves."""
    reject_unknown(options, MODEL_OPTIONS + BATCH_OPTIONS, owner)
    if model is not None and not isinstance(model, (str, Path)):
        raise ConfigError(f"{owner} model must be a checkpoint folder or Hub name (str or Path), got "
                          f"{type(model).__name__} {model!r}", "e.g. rmscore.Scorer('Skywork/Skywork-Reward-V2-Qwen3-0.6B')")
    path = default_model() if model is None else str(model)
    model_cfg = ModelConfig(path=path, **{k: v for k, v in options.items() if k in MODEL_OPTIONS})
    batch_cfg = BatchConfig(**{k: v for k, v in options.items() if k in BATCH_OPTIONS})
    return model_cfg, batch_cfg


def reject_unknown(given, valid: tuple[str, ...], owner: str) -> None:
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], valid, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{owner} got unknown option(s) {', '.join(map(repr, unknown))}{guess}",
                      f"valid options: {', '.join(valid)}")


def column_map(columns: dict | ColumnMap | None) -> ColumnMap:
    """Input column names, as `rmscore score`'s --prompt-col etc.: {"prompt": "question", ...}."""
    if columns is None or isinstance(columns, ColumnMap):
        return columns or ColumnMap()
    if not isinstance(columns, dict):
        raise ConfigError(f"columns must be a dict such as {{'prompt': 'question'}}, got {type(columns).__name__}")
    reject_unknown(columns, COLUMN_NAMES, "columns")
    return ColumnMap(**columns)


def row_list(rows) -> list:
    """Rows as a list; one dict on its own is refused (iterating it would score its keys)."""
    if isinstance(rows, dict) or isinstance(rows, (str, bytes)):
        raise InputError(f"rows must be a list of row dicts, got one {type(rows).__name__}",
                         "wrap a single row in a list: score([row])")
    return listed(rows, "rows", "a list of row dicts")


def listed(value, name: str, what: str) -> list:
    """An argument that holds one item per row, as a list: any iterable but text, bytes or a dict,
    whose iteration would give characters or keys."""
    if value is None or isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        one = isinstance(value, (str, bytes, dict))
        kind = "None" if value is None else f"{'one ' if one else ''}{type(value).__name__}"
        raise InputError(f"{name} must be {what}, got {kind}",
                         f"wrap a single one in a list: {name}=[...]" if one else f"pass {what}")
    return list(value)


_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")
_COLUMN_FLAG = re.compile(r"--([a-z]+)-col(?: (''|[A-Za-z_][\w.-]*))?")


def api_words(text: str | None) -> str | None:
    """A message in a Python caller's words: the option --max-length is the argument max_length,
    and --steps-col is columns={"steps": ...}."""
    if not text:
        return text
    text = _COLUMN_FLAG.sub(lambda m: f'columns={{"{m[1]}": "{(m[2] or "...").strip(chr(39))}"}}', text)
    return _FLAG.sub(lambda m: m[1].replace("-", "_"), text)


@contextmanager
def in_api_words():
    """Errors raised inside are reworded for a Python caller (the CLI's words are its options)."""
    try:
        yield
    except RmscoreError as exc:
        exc.message, exc.hint = api_words(exc.message), api_words(exc.hint)
        exc.args = (exc.message,)
        raise
