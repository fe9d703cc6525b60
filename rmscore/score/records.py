"""The records that flow through the pipeline, and the output column names.

Reader -> Sample -> (adapter.encode) -> Encoded -> (forward + adapter.head) -> output dict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Status codes written in the `status` column; `status_detail` says more in words.
OK = "ok"
TRUNCATED = "truncated"  # scored after dropping leading tokens (--on-overflow truncate-left)
TOO_LONG = "too_long"  # not scored: longer than --max-length (--on-overflow skip)
INVALID_ROW = "invalid_row"  # not scored: the row is malformed (null completion, bad JSON, ...)
STEP_MISMATCH = "step_mismatch"  # PRM: step tags found != steps given; not scored
OUT_OF_MEMORY = "out_of_memory"  # not scored: the row alone does not fit in device memory
UNPARSED = "unparsed"  # generative judge: its reply holds no verdict; the reply is kept, never a number
JUDGE_ERROR = "judge_error"  # generative judge: the server refused this request (a 4xx other than 408/429)
SCORED_STATUSES = (OK, TRUNCATED)

@dataclass(slots=True)
class Sample:
    """One completion to score. `error` set by the reader means the row is malformed."""

    input_index: int
    completion_index: int
    prompt_id: str | None
    prompt: list[dict] | None
    prompt_is_text: bool
    completion: str | None
    side: str | None = None
    steps: list[str] | None = None
    extra: dict = field(default_factory=dict)
    error: str | None = None
    # The completions of the sample's input row, in order (one list shared by the row's samples):
    # what a pairwise judge puts beside this completion.
    siblings: list | None = None

    @property
    def key(self) -> tuple[int, int]:
        """Unique within one input: the row id used for resume and de-duplication."""
        return (self.input_index, self.completion_index)


@dataclass(slots=True)
class Encoded:
    """Token ids of one sample and the positions whose hidden states the adapter's head reads.

    `positions` index into `ids`. Seq-cls models read one position (the last token); ArmoRM two
    (gating token, last token); process reward models one per step.
    """

    ids: list[int]
    positions: list[int]
    token_type_ids: list[int] | None = None
    expected_positions: int | None = None  # PRMs: number of steps; checked against positions
    status: str = OK
    detail: str | None = None
    group: object = None  # rows with the same group share a prompt (set by the loop: prompt_id)
    # What a generative judge sends besides `ids` (the swapped order of a pairwise request); None
    # for families whose head reads hidden states.
    payload: object = None

    def __len__(self) -> int:
        return len(self.ids)


def prompt_hash(prompt: list[dict]) -> str:
    """A stable id for a prompt: the same messages give the same id on every run and machine."""
    canonical = json.dumps(
        [[m.get("role"), m.get("content")] for m in prompt], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]


def stable_bucket(key: str, buckets: int) -> int:
    """A bucket in [0, buckets) that depends only on `key` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % buckets
