"""Process reward models: the steps of a completion in, one score per step out, then aggregates.

Every PRM adapter subclasses ProcessRewardModel. Steps come from the input's `steps` column, from
a completion already in the family's tagged format (the family's own rule, `tagged_steps`), or
are split from the completion by the family's rule (`separator`, overridden by --step-separator).
A step is never empty: split text drops whitespace-only pieces, and an empty step given in a steps
list or between tags makes the row invalid. The prompt rule is here too, once for every family:
one user question, after a system turn only where the family's reference takes one.
The adapter renders the steps the way its reference code does, with one read position per step,
so the whole completion is scored in one forward pass; its head turns the hidden state at each
position into a step score. Aggregation lives here, so `score_min` etc. mean the same in every family.
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import ClassVar

import pyarrow as pa

from rmscore.config import ModelConfig
from rmscore.errors import ConfigError, RowError
from rmscore.models import chat, loading
from rmscore.models.base import RewardModel
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

AGGREGATE_FIELDS = ("score_min", "score_prod", "score_mean", "score_last")


def normalize_newlines(text: str) -> str:
    """CRLF and CR line endings as "\n": every family's separator and tags are written with "\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_steps(text: str, separator: str) -> list[str]:
    """The pieces between separators, stripped, line endings normalised first; a piece that is
    only whitespace (a run of separators, a blank line) is no step."""
    pieces = normalize_newlines(text).split(normalize_newlines(separator))
    return [piece.strip() for piece in pieces if piece.strip()]


def aggregates(scores: list[float]) -> dict[str, float]:
    return {
        "score_min": min(scores),
        "score_prod": math.prod(scores),  # Lightman et al.: P(every step is correct)
        "score_mean": sum(scores) / len(scores),
        "score_last": scores[-1],
    }


def prompt_rule(system_turn: bool) -> str:
    """The prompt shapes a family takes, in words (`rmscore models`, row errors)."""
    if system_turn:
        return "one user question, after an optional system turn (from the data or --system-prompt, the same turn)"
    return "one user question, no system turn (none in the data, no --system-prompt)"


def in_order(items: list, encode) -> list:
    """encode() the items that are not RowErrors in one call; RowErrors keep their places."""
    good = [item for item in items if not isinstance(item, RowError)]
    encoded = iter(encode(good) if good else [])
    return [item if isinstance(item, RowError) else next(encoded) for item in items]


def without_specials(tokenizer, text: str) -> str:
    """The text with this tokenizer's special tokens (end of turn, padding, ...) taken out."""
    added = [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special]
    for token in sorted({t for t in [*tokenizer.all_special_tokens, *added] if t}, key=len, reverse=True):
        text = text.replace(token, "")
    return text


def trim_specials(text: str, leading: list[str | None], trailing: list[str | None]) -> str:
    """The text without these tokens at its start and end (a batched decode's padding, a BOS the
    tokenizer adds again, the EOS a policy stops at)."""
    found = True
    while found:
        found = next((t for t in leading if t and text.startswith(t)), None)
        text = text[len(found):] if found else text
    found = True
    while found:
        found = next((t for t in trailing if t and text.endswith(t)), None)
        text = text[:-len(found)] if found else text
    return text


def tag_positions(ids_list: list[list[int]], step_counts: list[int], tag_id: int) -> list[Encoded]:
    """Read every position holding the step tag; the scoring loop flags a row whose tag count
    differs from its step count (a tag in the question, or a tag that tokenized differently)."""
    return [Encoded(ids, [i for i, t in enumerate(ids) if t == tag_id], expected_positions=n)
            for ids, n in zip(ids_list, step_counts, strict=True)]


class ProcessRewardModel(RewardModel):
    reads_steps = True
    separator: ClassVar[str]  # how the family splits a completion into steps
    # A marker the family writes after each step. Removed from the question and given steps first
    # (as the Math-Shepherd card advises), so the markers in the input are one per step.
    tag: ClassVar[str | None] = None
    tag_is_word: ClassVar[bool] = False  # the tag counts only as a word of its own (not inside one)
    takes_step_tokens: ClassVar[bool] = False  # whether --step-tokens (tag, good, bad) applies
    # Every PRM reference scores one problem: the prompt is one user question. A family whose
    # reference has a system turn takes one, from the data or --system-prompt alike; the others
    # take none, so a system turn is never silently dropped or added.
    system_turn: ClassVar[bool] = False
    rendered_format: ClassVar[str] = ""  # a rendered text in the family's format, in words (row errors)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.prompts = prompt_rule(cls.system_turn)

    @classmethod
    def start(cls, cfg: ModelConfig, hf_config: dict) -> "ProcessRewardModel":
        """An adapter with its device, dtype and tokenizer set: the part of load() every PRM shares."""
        if cfg.bos is not None:
            raise ConfigError("--bos does not apply to process reward models", "each adds BOS as its reference does")
        if cfg.step_tokens is not None and not cls.takes_step_tokens:
            raise ConfigError(f"--step-tokens does not apply to {cls.name}", "it sets the tag and label tokens of "
                              "--model-type step-tag")
        if cfg.system_prompt is not None and not cls.system_turn:
            raise ConfigError(f"{cls.name} takes no system prompt: its reference input has none",
                              "drop --system-prompt")
        self = cls.begin(cfg)
        tok = self.tokenizer
        # Causal rows need no mask and never see later pads (rmscore/forward.py): any id will do.
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if isinstance(i, int)), 0)
        self.max_length = loading.model_max_length(hf_config, tok)
        return self

    def question(self, sample: Sample) -> tuple[str | None, str]:
        """(system turn or None, question) by the rule every family shares; RowError otherwise."""
        turns = chat.with_system(sample.prompt, self.cfg.system_prompt)
        roles = [m["role"] for m in turns]
        if roles == ["user"] or (self.system_turn and roles == ["system", "user"]):
            return (turns[0]["content"] if len(turns) == 2 else None), turns[-1]["content"]
        raise RowError(records.INVALID_ROW, f"{self.name} reads {self.prompts}; the prompt has turns {roles}")

    def steps_of(self, sample: Sample) -> list[str]:
        if sample.steps is not None:
            return self.checked([self.untag(s) for s in sample.steps], "the steps list")
        text = normalize_newlines(sample.completion)
        if not text.strip():
            raise RowError(records.INVALID_ROW, "no steps to score: the completion is empty")
        tagged = self.tagged_steps(text)
        if tagged is not None:
            return self.checked(tagged, "the tagged completion")
        return self.split(self.untag(text))

    def checked(self, steps: list[str], where: str) -> list[str]:
        """Steps someone wrote down: an empty one is a mistake to report, not a step to score."""
        if not steps:
            raise RowError(records.INVALID_ROW, f"no steps to score: {where} is empty")
        empty = [str(k + 1) for k, step in enumerate(steps) if not step.strip()]
        if empty:
            raise RowError(records.INVALID_ROW, f"step {', '.join(empty)} of {len(steps)} in {where} is empty: "
                                                "remove it, or it is scored as a step of its own")
        return steps

    def split(self, text: str) -> list[str]:
        """The steps of an untagged completion (line endings already normalised)."""
        steps = split_steps(text, self.cfg.step_separator or self.separator)
        if not steps:
            raise RowError(records.INVALID_ROW, "no steps to score: the completion has only separators")
        return steps

    def tagged_steps(self, text: str) -> list[str] | None:
        """The steps of a completion already in the family's tagged format, by the rule its card
        implies; None when it is not tagged; RowError when it carries tags that do not fit."""
        return None

    def tag_pattern(self) -> re.Pattern:
        """Where the family's tag counts as a tag: a special token anywhere; a word tag (step-tag's
        "ки") only as a word of its own, so "русский" holds no tag."""
        escaped = re.escape(self.tag)
        return re.compile(rf"(?<!\S){escaped}(?!\S)" if self.tag_is_word else escaped)

    def untag(self, text: str) -> str:
        """Remove tags from user text (as the Math-Shepherd card advises), so the tags in the input
        are exactly one per step."""
        if not self.tag:
            return text
        cleaned = self.tag_pattern().sub("", text)
        return cleaned.strip() if cleaned != text else text

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        return in_order([self._prepare(s) for s in samples], self.encode_prepared)

    def _prepare(self, sample: Sample):
        try:
            return self.prepare(sample, self.steps_of(sample))
        except RowError as problem:
            return problem

    def prepare(self, sample: Sample, steps: list[str]):
        """The family's input for one sample (text, pieces, ...); RowError if it has none."""
        raise NotImplementedError

    def encode_prepared(self, prepared: list) -> list[Encoded]:
        """Token ids and one read position per step, for a whole window (one tokenizer call)."""
        raise NotImplementedError

    # --- conversations a caller already rendered as text (serve: /get_reward, /pooling input) ---

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        """Text the family's own format rendered, its step markers in it, is read where encode()
        reads the same question and steps (read_rendered: the family's rule)."""
        return in_order([self._read(text) for text in texts], self.encode_read)

    def _read(self, text: str):
        try:
            return self.read_rendered(text)
        except RowError as problem:
            return problem

    def read_rendered(self, text: str):
        """What encode_read needs of one rendered text; RowError when it is not in the family's format."""
        raise RowError(records.INVALID_ROW, f"{self.name} models do not read a rendered text; send the question "
                                            "and its steps (prompt + steps, or messages)")

    def encode_read(self, read: list) -> list[Encoded]:
        """Token ids and read positions of texts read_rendered accepted, for a whole window."""
        raise NotImplementedError

    def tagged_text(self, text: str, reply_start: int = 0) -> int:
        """The number of steps of a rendered text in a tag family's format: one per tag, every tag
        inside the reply (at or after reply_start), and nothing but special tokens and whitespace
        after the last one (a final step without its tag would go unscored)."""
        tags = [m.start() for m in self.tag_pattern().finditer(text)]
        if not tags:
            raise RowError(records.INVALID_ROW, f"no step tag {self.tag!r} in the text: {self.name} reads rendered "
                                                f"text in its card's format, {self.rendered_format}")
        if tags[0] < reply_start:
            raise RowError(records.INVALID_ROW, f"a step tag {self.tag!r} stands before the assistant reply: the "
                                                "card's tags end the reply's steps; remove it from the question")
        if without_specials(self.tokenizer, text[tags[-1] + len(self.tag):]).strip():
            raise RowError(records.INVALID_ROW, f"text after the last step tag {self.tag!r} would not be scored: "
                                                f"end every step with the tag ({self.rendered_format})")
        return len(tags)

    @cached_property
    def reply_opener(self) -> str:
        return chat.reply_opener(self.tokenizer)

    def step_scores(self, hidden):
        """(positions, H) hidden states -> (positions,) step scores in [0, 1]."""
        raise NotImplementedError

    def head(self, hidden, batch: list[Encoded]) -> dict:
        return {"step_scores": self.step_scores(hidden)}  # (sum positions,): one per step

    def rows(self, columns: dict[str, list], batch: list[Encoded]) -> list[dict]:
        scores = columns["step_scores"]
        rows, start = [], 0
        for enc in batch:
            mine = scores[start:start + len(enc.positions)]
            start += len(enc.positions)
            row = {"step_scores": mine, **aggregates(mine)}
            rows.append({"score": row[f"score_{self.cfg.aggregate}"], **row})
        return rows

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("step_scores", pa.list_(pa.float64()))] + [pa.field(f, pa.float64()) for f in AGGREGATE_FIELDS]

    def metadata(self) -> dict:
        return {
            "aggregate": self.cfg.aggregate,
            "step_separator": self.cfg.step_separator or self.separator,
            "step_tag": self.tag,
        }
