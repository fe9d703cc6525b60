"""Keyword options of the Python API, checked by the typed configs `rmscore score` uses.

A command-line option --x-y is the keyword x_y (--model is the first argument, `model`): the model
options (ModelConfig) and the batching and length options (BatchConfig). Nothing is validated
here that the configs do not already validate; this module only routes keywords to them.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path

from rmscore.config import BatchConfig, ColumnMap, ModelConfig, default_model
from rmscore.errors import ConfigError, InputError

MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name != "path")
BATCH_OPTIONS = tuple(f.name for f in fields(BatchConfig))
COLUMN_NAMES = tuple(f.name for f in fields(ColumnMap))


def configs(model: str | Path | None, options: dict, owner: str) -> tuple[ModelConfig, BatchConfig]:
    """The ModelConfig and BatchConfig of `owner(model, **options)`. Unknown keywords raise
    ConfigError naming the valid ones; values are validated by the configs themselves."""
    reject_unknown(options, MODEL_OPTIONS + BATCH_OPTIONS, owner)
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
    return list(rows)
