"""rmscore.RewardFunction: a reward model as the reward function of TRL's online trainers.

TRL's GRPOTrainer and RLOOTrainer call `f(prompts=..., completions=..., **extra)` and take one
float (or None) per completion. TRL's own "model id" reward reads a sequence classifier's head on
right-padded, re-templated text; this reads every family exactly as `rmscore score` does, batched
by tokens, with each GRPO group's shared prompt computed once (its rows share a prompt_id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from pathlib import Path

from rmscore.api.options import in_api_words, listed
from rmscore.config import ColumnMap
from rmscore.errors import ConfigError, InputError, ServerError
from rmscore.score.records import SCORED_STATUSES

log = logging.getLogger("rmscore")
INDEXED = re.compile(r"^(?P<column>.+)\[(?P<index>\d+)\]$")  # rewards[3], as build-pairs reads it
# Result columns that are numbers but not rewards: a row's position, its length.
NOT_REWARDS = ("input_index", "completion_index", "num_tokens")
DEFAULT_TIMEOUT_S = 300.0


class RewardFunction:
    """A reward model with TRL's reward-function signature, in this process or behind `rmscore serve`.

    Args:
        model: checkpoint folder or Hub name, loaded once here (default: the demo reward model),
            or an rmscore.Scorer already loaded.
        url: instead of model, a running `rmscore serve` (e.g. "http://10.0.0.5:8000"), so the reward
            model sits on its own GPU; model options are then the server's.
        score_column: which number is the reward: "score" (default; for a process reward model the
            `aggregate` option picks which aggregate that is), another numeric result column such as
            "score_last", an ArmoRM objective name such as "helpsteer-correctness", or "rewards[i]".
        name: the name TRL logs the reward under (default: the model's name).
        api_key: url= only: the key given to `rmscore serve --api-key` (default: $RMSCORE_API_KEY).
        timeout: url= only: seconds one call may take, retries after a 503 (honouring its
            Retry-After) or a refused connection included.
        **options: model= only: the options of rmscore.Scorer (dtype, max_length, aggregate, ...).

    Prompts and completions come in TRL's standard form (strings: the prompt is read as the user
    turn) or conversational form (message lists). The reward is None (TRL: missing) for a
    completion that cannot be scored (too long for max_length, not renderable, ...); each distinct
    reason is logged once. TRL's extra keyword arguments (dataset columns, trainer_state, ...) are
    ignored. For TRL's async reward functions use AsyncRewardFunction.
    """

    def __init__(self, model=None, *, url: str | None = None, score_column: str = "score",
                 name: str | None = None, api_key: str | None = None, timeout: float | None = None, **options):
        from rmscore.api.client import Client
        from rmscore.api.local import Scorer

        self.scorer = self.client = None
        if url is not None:
            if model is not None or options:
                given = ["model"] * (model is not None) + list(options)
                raise ConfigError(f"{', '.join(given)} cannot go with url=: the server has loaded its model",
                                  "pass model options to rmscore serve (e.g. --max-length), or drop url=")
            self.client = Client(url, api_key, DEFAULT_TIMEOUT_S if timeout is None else timeout)
            self.column = ScoreColumn(score_column, served=True)
        else:
            if api_key is not None or timeout is not None:
                raise ConfigError("api_key and timeout apply to url= only", "drop them, or score through url=")
            if isinstance(model, Scorer):
                if options:
                    raise ConfigError(f"options {', '.join(options)} cannot change a loaded Scorer",
                                      "pass them to rmscore.Scorer(...) instead")
                self.scorer = model
            else:
                self.scorer = Scorer(model, **options)
            self.column = ScoreColumn(score_column, _kinds(self.scorer), self.scorer.objectives)
        self.score_column = score_column
        self.__name__ = name or _default_name(self.scorer, score_column)
        self._reported: set[tuple[str, str]] = set()

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        """One reward per completion (None where it cannot be scored). kwargs are TRL's extras."""
        return self.rewards(prompts, completions)

    def rewards(self, prompts: list, completions: list) -> list[float | None]:
        """What a call returns, for callers other than TRL (e.g. inside an async call's thread)."""
        with in_api_words():
            rows = trl_rows(prompts, completions)
            if not rows:
                return []
            results = self.client.score(rows) if self.client else self.scorer.score(rows, ColumnMap())
            if len(results) != len(rows):
                raise ServerError(f"{len(results)} results for {len(rows)} completions",
                                  "is the server an rmscore serve?")
            return [self._reward(result) for result in results]

    def _reward(self, result: dict) -> float | None:
        status = result.get("status")
        value = self.column.value(result) if status in SCORED_STATUSES else None
        if value is None:
            self._report(status or "no status", result.get("status_detail") or f"no {self.score_column!r} value")
            return None
        return float(value)

    def _report(self, status: str, detail: str) -> None:
        key = (status, detail.split(" (")[0])  # one line per kind of problem, not per row's numbers
        if key not in self._reported:
            self._reported.add(key)
            log.warning("rmscore reward %r: reward None for a completion: %s: %s (logged once per reason)",
                        self.__name__, status, detail)

    def __repr__(self) -> str:
        where = self.client.endpoint if self.client else self.scorer.model_config.path
        return f"rmscore.{type(self).__name__}({where!r}, score_column={self.score_column!r})"


class AsyncRewardFunction(RewardFunction):
    """RewardFunction whose call is a coroutine: TRL runs async reward functions together on its
    event loop (trl.trainer.utils.is_async_callable looks at __call__). The scoring itself runs on a
    worker thread, so the loop stays free for the other reward functions meanwhile."""

    async def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        return await asyncio.to_thread(self.rewards, prompts, completions)


def trl_rows(prompts: list, completions: list) -> list[dict]:
    """rmscore rows of TRL's prompts and completions: prompt + completion rows for the standard
    form; for the conversational form, the conversation (prompt messages, then the completion's).
    A string is text, always: a completion that looks like JSON is scored as the text it is."""
    prompts = listed(prompts, "prompts", "a list with one prompt per completion")
    completions = listed(completions, "completions", "a list of completions")
    if len(prompts) != len(completions):
        raise InputError(f"{len(prompts)} prompts for {len(completions)} completions: TRL gives one prompt per "
                         "completion")
    rows = []
    for prompt, completion in zip(prompts, completions):
        if isinstance(completion, list):
            turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            rows.append({"messages": [*turns, *completion]})
        else:
            rows.append({"prompt": prompt, "completion": completion})
    return rows


class ScoreColumn:
    """Which number of a result is the reward. `kinds` (column -> is a list), when known, checks
    the name at once; otherwise (a served model) it is checked against the first result."""

    def __init__(self, name: str, kinds: dict[str, bool] | None = None, objectives: list[str] | None = None,
                 served: bool = False):
        self.name, self.served = name, served
        self.column: str | None = None
        self.index: int | None = None
        if kinds is not None:
            self._resolve(kinds, objectives or [])

    def value(self, result: dict):
        if self.column is None:
            self._resolve({k: isinstance(v, list) for k, v in result.items()}, _served_objectives(result))
        value = result.get(self.column)
        if self.index is not None:
            value = value[self.index] if isinstance(value, list) and self.index < len(value) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            if self.served:  # the column is a number wherever rmscore computes it: the reply is broken
                raise ServerError(f"the server sent {self.name!r} as {json.dumps(value)[:80]}, not a number",
                                  "is the URL an rmscore serve?")
            raise ConfigError(f"score_column {self.name!r} is not a number but {type(value).__name__}")
        return value if value is None or not math.isnan(value) else None

    def _resolve(self, kinds: dict[str, bool], objectives: list[str]) -> None:
        match = INDEXED.match(self.name)
        if match and kinds.get(match["column"]):
            self.column, self.index = match["column"], int(match["index"])
        elif self.name in kinds and not kinds[self.name] and self.name not in NOT_REWARDS:
            self.column = self.name
        elif self.name in objectives:
            self.column, self.index = "rewards", objectives.index(self.name)
        else:
            numbers = [k for k, is_list in kinds.items() if k.startswith("score") and not is_list]
            why = f" ({self.name!r} is a row's position or length, not a reward)" if self.name in NOT_REWARDS else ""
            lists = [f"{k}[i]" for k, is_list in kinds.items() if is_list]
            raise ConfigError(f"score_column {self.name!r} is not a number this model gives{why}",
                              "choose one of " + ", ".join(numbers + objectives + lists))


def _kinds(scorer) -> dict[str, bool]:
    import pyarrow as pa

    return {f.name: pa.types.is_list(f.type) for f in scorer.schema}


def _served_objectives(result: dict) -> list[str]:
    """ArmoRM's objective names, for a served ArmoRM (the server sends the vectors, not the names)."""
    if not (isinstance(result.get("rewards"), list) and "gating_output" in result):
        return []
    from rmscore.models.armorm import OBJECTIVES

    return list(OBJECTIVES) if len(result["rewards"]) == len(OBJECTIVES) else []


def _default_name(scorer, score_column: str) -> str:
    base = Path(scorer.model_config.path.rstrip("/")).name if scorer else "rmscore-serve"
    return base if score_column == "score" else f"{base}:{score_column}"
