"""What every forward runner shares: the contract, host-to-device copies, and the gather.

A runner turns a batch of Encoded rows into hidden states at each row's read positions, in batch
order, then hands them to the adapter's head. Runners differ only in how they lay tokens out:
padded rows, one packed row, or shared prompts computed once. Each must give the same numbers as a
batch-size-1 forward; the tests check all of them against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rmscore.score.records import Encoded


@dataclass
class Cost:
    """Tokens of one batch: `real` = sum of row lengths (what the user scored), `computed` = tokens
    run through the model excluding padding (less than real when prompts are shared), `padded` =
    tokens run including padding (what the GPU paid for)."""

    real: int
    computed: int
    padded: int
    forwards: int = 1  # backbone calls (prompt reuse runs a planned batch as several)


class Runner:
    name: str
    layout: str | None = None  # "padded" / "packed": what transformers need not read off the device

    def __init__(self, model):
        self.model = model

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        raise NotImplementedError

    def cost(self, batch: list[Encoded]) -> Cost:
        raise NotImplementedError

    def collate(self, batch: list[Encoded], max_tokens: int | None = None) -> dict:
        """CPU tensors for the batch (pinned when the model is on a GPU). Runs on a background
        thread while the previous batch is on the device. `max_tokens` is the current budget, for
        runners that split a planned batch into several forwards (prompt reuse)."""
        raise NotImplementedError

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        """(sum of len(e.positions) over batch, H) hidden states, in batch order."""
        raise NotImplementedError

    def outputs(self, batch: list[Encoded], inputs: dict | None = None, max_tokens: int | None = None):
        """The head's output for the batch, still on the device (see RewardModel.head)."""
        with torch.inference_mode():
            inputs = inputs if inputs is not None else self.collate(batch, max_tokens)
            return self.model.head(self.hidden(inputs, batch), batch)

    def score(self, batch: list[Encoded], inputs: dict | None = None, max_tokens: int | None = None) -> list[dict]:
        """One output dict per row, on the host now (one device sync): for single batches."""
        from rmscore.score.forward.outputs import head_rows

        return head_rows(self.model, self.outputs(batch, inputs, max_tokens), batch)

    def tensor(self, values: list[int], *shape: int, dtype=torch.long) -> torch.Tensor:
        out = torch.tensor(values, dtype=dtype).view(*shape)
        # Pinned host memory lets the copy to the GPU run asynchronously (non_blocking below).
        return out.pin_memory() if self.model.device.type == "cuda" else out

    def to_device(self, inputs: dict) -> dict:
        return {k: v.to(self.model.device, non_blocking=True) for k, v in inputs.items()}

    def backbone(self, **inputs):
        from rmscore.score.forward.known_layout import known_layout

        with known_layout(self.layout if self.model.is_causal else None):
            out = self.model.backbone(**inputs, **self.model.backbone_kwargs)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def padded_flat(rows: list[list[int]], width: int, pad: int) -> list[int]:
    return [t for row in rows for t in (*row, *[pad] * (width - len(row)))]


def gather(hidden: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H) -> (len(rows), H) at the given (row, column) pairs (host index tensors,
    pinned on a GPU: copied without a sync)."""
    return hidden[rows.to(hidden.device, non_blocking=True), cols.to(hidden.device, non_blocking=True)]
