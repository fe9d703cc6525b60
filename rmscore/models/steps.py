"""Process reward models: the steps of a completion in, one score per step out, then aggregates.

Every PRM adapter subclasses ProcessRewardModel. Steps come from the input's `steps` column, or
are split from the completion by the family's rule (`separator`, overridden by --step-separator).
The adapter renders them the way its reference code does, with one read position per step, so the
whole completion is scored in one forward pass; its head turns the hidden state at each position
into a step score. Aggregation lives here, so `score_min` etc. mean the same in every family.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyarrow as pa

from rmscore import records
from rmscore.config import ModelConfig
from rmscore.errors import ConfigError, RowError
from rmscore.models import loading
from rmscore.models.base import RewardModel
from rmscore.records import Encoded, Sample

AGGREGATE_FIELDS = ("score_min", "score_prod", "score_mean", "score_last")


def split_steps(text: str, separator: str) -> list[str]:
    """RLHFlow's reference rule: the pieces between separators, stripped; a run of separators
    gives no empty step."""
    return [piece.strip() for piece in text.split(separator) if piece != ""]


def aggregates(scores: list[float]) -> dict[str, float]:
    return {
        "score_min": min(scores),
        "score_prod": math.prod(scores),  # Lightman et al.: P(every step is correct)
        "score_mean": sum(scores) / len(scores),
        "score_last": scores[-1],
    }


def question(sample: Sample) -> str:
    """The question of a family whose reference input is one question string."""
    roles = [m["role"] for m in sample.prompt]
    if roles != ["user"]:
        raise RowError(records.INVALID_ROW, f"this process reward model reads one user question; the prompt has "
                                            f"turns {roles}")
    return sample.prompt[0]["content"]


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
    takes_step_tokens: ClassVar[bool] = False  # whether --step-tokens (tag, good, bad) applies

    @classmethod
    def start(cls, cfg: ModelConfig, hf_config: dict) -> "ProcessRewardModel":
        """An adapter with its device, dtype and tokenizer set: the part of load() every PRM shares."""
        if cfg.bos is not None:
            raise ConfigError("--bos does not apply to process reward models", "each adds BOS as its reference does")
        if cfg.step_tokens is not None and not cls.takes_step_tokens:
            raise ConfigError(f"--step-tokens does not apply to {cls.name}", "it sets the tag and label tokens of "
                              "--model-type step-tag")
        self = cls.begin(cfg)
        tok = self.tokenizer
        # Causal rows need no mask and never see later pads (rmscore/forward.py): any id will do.
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if isinstance(i, int)), 0)
        self.max_length = loading.model_max_length(hf_config, tok)
        return self

    def split(self, text: str) -> list[str]:
        if self.tagged(text):
            return [piece.strip() for piece in text.split(self.tag)[:-1]]  # text after the last tag: no step
        return split_steps(text, self.cfg.step_separator or self.separator)

    def tagged(self, text: str) -> bool:
        """A completion already in the family's own format (a tag after each step) is the reference's
        input as it stands: the tags mark the steps and the text is scored unchanged."""
        return bool(self.tag) and self.tag in text

    def completion_as_given(self, sample: Sample) -> str | None:
        return sample.completion if sample.steps is None and self.tagged(sample.completion) else None

    def steps_of(self, sample: Sample) -> list[str]:
        if sample.steps is not None:
            steps = sample.steps
        elif not sample.completion.strip():
            raise RowError(records.INVALID_ROW, "no steps to score: the completion is empty")
        else:
            steps = self.split(sample.completion)
        if not steps:
            raise RowError(records.INVALID_ROW, "no steps to score: the steps list is empty")
        return [self.untag(s).strip() if self.tagged(s) else s for s in steps]

    def untag(self, text: str) -> str:
        return text.replace(self.tag, "") if self.tag else text

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        prepared = [self._prepare(s) for s in samples]
        good = [p for p in prepared if not isinstance(p, RowError)]
        encoded = iter(self.encode_prepared(good) if good else [])
        return [p if isinstance(p, RowError) else next(encoded) for p in prepared]

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
