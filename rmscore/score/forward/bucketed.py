"""Batch-invariant rows (--batch-invariant): a row's score is the same to the last bit whatever
batch it lands in.

On CPU the last bits of a row's score move with two things only, both measured (issue 31):
  - the length the row is padded to: the attention kernel blocks its work by sequence length, so
    a row padded to 64 and the same row padded to 96 round differently. Here every row is padded
    to canonical_length(its own length), and a batch holds rows of one such length, so the
    padding a row gets never depends on its companions;
  - the number of rows a head's matmul sees: a GEMM of 1 to 3 rows takes another kernel than one
    of 4 or more. Here the head runs once per row, on that row's read positions alone.
The backbone's matmuls were bit-identical across batch sizes 1 to 40 at a fixed padded length.
Packed rows and prompt reuse cannot give this: a packed row's kernels see all its neighbours'
tokens, and a reused prompt is padded to the other prompts of its stage. So this is the one path
of the mode. On a GPU, cuBLAS may choose other kernels for other batch shapes: no claim there
until a device run shows it (bench/device_check.sh, `rmscore doctor --batch-invariant`).
"""

from __future__ import annotations

import torch

from rmscore.score.batching import canonical_length, plan_buckets
from rmscore.score.forward.padded import PaddedForward
from rmscore.score.records import Encoded


class BucketedForward(PaddedForward):
    name = "bucketed"

    def canonical(self, n: int) -> int:
        # Capped at the model's own position limit, not --max-length: a row's width depends on
        # the row and the model, never on a run option.
        return canonical_length(n, self.model.max_length)

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        return plan_buckets([len(e) for e in encs], max_tokens, max_rows, self.canonical)

    def width(self, batch: list[Encoded]) -> int:
        widths = {self.canonical(len(e)) for e in batch}
        assert len(widths) == 1, f"a batch-invariant batch mixes padded lengths {sorted(widths)}"
        return widths.pop()

    def outputs(self, batch: list[Encoded], inputs: dict | None = None, max_tokens: int | None = None):
        """The head's output, run row by row so no row's numbers depend on how many share its batch."""
        with torch.inference_mode():
            inputs = inputs if inputs is not None else self.collate(batch, max_tokens)
            hidden = self.hidden(inputs, batch)  # (sum positions, H)
            rows = hidden.split([len(e.positions) for e in batch])  # per row (its positions, H)
            return join([self.model.head(h, [enc]) for h, enc in zip(rows, batch)])


def join(outputs: list):
    """Per-row head outputs as one batch's: {column: tensor} concatenated, or lists of output dicts
    (heads that return host rows) chained."""
    if isinstance(outputs[0], dict):
        return {name: torch.cat([o[name] for o in outputs]) for name in outputs[0]}
    return [row for rows in outputs for row in rows]
