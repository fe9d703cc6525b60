"""A reward model loaded once and ready to score rows held in memory.

`rmscore score` (rmscore/score/run.py), `rmscore serve` and the Python API all build one of these and
score through its window Scorer (rmscore/score/scorer.py): the same encode, length policy, dedupe,
token-budget batches, forward runners and out-of-memory back-off everywhere. There is no second
scoring loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from rmscore.config import BatchConfig, ColumnMap, ModelConfig
from rmscore.errors import RowError
from rmscore.models.base import RewardModel
from rmscore.read.contract import Reading
from rmscore.read.layout import row_samples
from rmscore.read.rows import RawRow
from rmscore.score import records
from rmscore.score.records import Sample, prompt_hash
from rmscore.score.scorer import Scorer
from rmscore.score.summary import RunSummary

# Output columns that only repeat what the caller sent: an in-memory result leaves them out.
ECHOED = ("prompt", "prompt_is_text", "completion")


@dataclass
class Engine:
    model: RewardModel  # the family adapter
    family: str
    max_length: int
    scorer: Scorer
    summary: RunSummary  # counters every scored window adds to

    @classmethod
    def load(cls, model_cfg: ModelConfig, batch_cfg: BatchConfig, summary=None, check=None,
             check_stop: Callable[[], None] = lambda: None, log=None) -> "Engine":
        """Load the model named by model_cfg and the scorer around it.

        check(adapter class, family), if given, runs before any weights load. A batch_cfg without
        a token budget gets the device's default (batch_cfg is updated in place, so the caller's
        config records what ran)."""
        from rmscore.models import load_model
        from rmscore.score.forward import default_token_budget
        from rmscore.score.scorer import Scorer
        from rmscore.score.summary import RunSummary

        model, family = load_model(model_cfg, check=check)
        max_length = batch_cfg.max_length or model.max_length
        if batch_cfg.max_tokens_per_batch is None:
            batch_cfg.max_tokens_per_batch = model.default_budget(max_length) or default_token_budget(model, max_length)
        summary = summary if summary is not None else RunSummary("<memory>")
        summary.model_type = family
        model.counts = summary.counts
        runners = model.runners(batch_cfg.forward, batch_cfg.batch_invariant)
        scorer = Scorer(model, runners, max_length, batch_cfg, summary, check_stop)
        if log is not None:
            path = "bucketed (--batch-invariant: padded rows at canonical lengths)" if batch_cfg.batch_invariant \
                else batch_cfg.forward
            log(f"model {model_cfg.path} as {family} on {model.device}; max length {max_length}, "
                f"{batch_cfg.max_tokens_per_batch} tokens per batch, forward path {path}")
        return cls(model, family, max_length, scorer, summary)

    def facts(self):
        """What the output folder says about this model (rmscore/score/compute.py's ModelFacts)."""
        from rmscore.score.compute import ModelFacts

        model = self.model
        param = next(model.backbone.parameters(), None) if model.backbone is not None else None
        dtype = str(param.dtype).replace("torch.", "") if param is not None else None  # None: served elsewhere
        return ModelFacts(self.family, self.max_length, dtype, model.metadata(), list(model.output_fields()),
                          model.reads_steps)

    def take_summary(self) -> RunSummary:
        """The counts of the work done since the last call, and a fresh summary for what comes next
        (a Ray actor sends each window's counts back with its rows)."""
        done, fresh = self.summary, RunSummary(self.summary.output, model_type=self.family)
        self.summary = self.scorer.summary = fresh
        self.model.counts = fresh.counts
        return done

    def score_samples(self, samples: list[Sample]) -> list[dict]:
        """One output row per sample, in order: the columns `rmscore score` writes."""
        return self.scorer.score_window(samples)

    def score_rows(self, rows: list, columns: ColumnMap | None = None, first_index: int = 0) -> list[dict]:
        """Score rows of any shape `rmscore score` reads (each row's shape detected on its own).
        One result per output row, in the order `rmscore score` writes them, without the echoed
        texts. A row that cannot be scored comes back with its status and reason."""
        samples = samples_from_rows(rows, columns or ColumnMap(), first_index, self.model.reads_steps)
        return [self.result(row) for row in self.score_samples(samples)]

    def samples(self, rows: list, first_index: int = 0) -> list[Sample]:
        """The samples of in-memory rows of any shape, numbered from first_index."""
        return samples_from_rows(rows, ColumnMap(), first_index, self.model.reads_steps)

    def prepare_rendered(self, samples: list[Sample], texts: list[str]):
        """Scorer.prepare for samples whose input is a conversation a policy already rendered as
        text (texts[i] for samples[i]; see rendered_samples): encoded by the family's
        encode_rendered, then the same length policy and checks."""
        return self.scorer.prepare(samples, self._encode_rendered(texts))

    def _encode_rendered(self, texts: list[str]) -> list:
        try:
            return self.model.encode_rendered(texts)
        except Exception:  # one text that breaks the family's reader must not sink the others
            return [self._encode_rendered_one(text) for text in texts]

    def _encode_rendered_one(self, text: str):
        try:
            return self.model.encode_rendered([text])[0]
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return RowError(records.INVALID_ROW, f"cannot read the rendered text: {reason}")

    def result(self, row: dict, first_index: int = 0) -> dict:
        """One output row as an in-memory result: the output columns less the echoed texts, with
        input_index counted from first_index."""
        out = {name: row.get(name) for name in self.result_columns}
        if out.get("input_index") is not None:
            out["input_index"] -= first_index
        return out

    @cached_property
    def result_columns(self) -> list[str]:
        """The output columns of `rmscore score` for this model, less the echoed texts."""
        from rmscore.store.output import BASE_SCHEMA

        fields = [*BASE_SCHEMA, *self.model.output_fields()]
        return [f.name for f in fields if f.name not in ECHOED]


def samples_from_rows(rows: list, columns: ColumnMap, first_index: int = 0, reads_steps: bool = True) -> list[Sample]:
    """The samples of in-memory rows, each read by the input contract (rmscore/read/contract.py) as
    `rmscore score` reads a row of a JSONL file: native types, the row's own shape."""
    reading = Reading(columns, reads_steps=reads_steps)
    samples: list[Sample] = []
    for offset, data in enumerate(rows):
        samples += row_samples(RawRow(first_index + offset, data), reading)[1]
    return samples


def rendered_samples(count: int, prompts: list[str] | None = None, first_index: int = 0) -> list[Sample]:
    """Samples standing for `count` conversations already rendered as text (their text goes to
    Engine.prepare_rendered). Rows with the same prompt text share a prompt_id, so their common
    prompt tokens can be computed once."""
    def prompt_id(i: int) -> str | None:
        prompt = prompts[i] if prompts is not None and i < len(prompts) else None
        return prompt_hash([{"role": "user", "content": prompt}]) if isinstance(prompt, str) and prompt else None

    return [Sample(first_index + i, 0, prompt_id(i), None, True, None) for i in range(count)]
