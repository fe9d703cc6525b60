"""Length-sorted rows, right-padded to the longest row of the batch. Works for every model.

  - The pad id never matters: causal decoders get no attention mask at all, because a real token
    never attends to the pads after it, so each row computes exactly what it computes alone (and
    sdpa keeps its fast causal kernels). Encoders (bidirectional) get a mask built from the true
    lengths, never from the pad id.
  - Hidden states are gathered at each row's own read positions before any head runs, so a head
    never touches padding and never has to find "the last non-pad token".
"""

from __future__ import annotations

import torch

from rmscore.score.batching import plan_batches
from rmscore.score.forward.base import Cost, Runner, gather, padded_flat
from rmscore.score.records import Encoded


class PaddedForward(Runner):
    name = "padded"
    layout = "padded"

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        return plan_batches([len(e) for e in encs], max_tokens, max_rows)

    def cost(self, batch: list[Encoded]) -> Cost:
        real = sum(len(e) for e in batch)
        return Cost(real, real, len(batch) * self.width(batch))

    def width(self, batch: list[Encoded]) -> int:
        """The padded length of the batch: its longest row."""
        return max(len(e) for e in batch)

    def collate(self, batch: list[Encoded], max_tokens: int | None = None) -> dict:
        model, lengths = self.model, [len(e) for e in batch]
        width = self.width(batch)
        inputs = {"input_ids": self.tensor(padded_flat([e.ids for e in batch], width, model.pad_id), len(batch), width)}
        if not model.is_causal:
            positions = torch.arange(width).expand(len(batch), width)  # (B, T)
            inputs["attention_mask"] = (positions < torch.tensor(lengths)[:, None]).long()  # (B, T)
            if model.device.type == "cuda":
                inputs["attention_mask"] = inputs["attention_mask"].pin_memory()
        if any(e.token_type_ids is not None for e in batch):
            types = [e.token_type_ids or [0] * len(e) for e in batch]
            inputs["token_type_ids"] = self.tensor(padded_flat(types, width, 0), len(batch), width)
        rows = [i for i, e in enumerate(batch) for _ in e.positions]
        inputs["read_rows"] = self.tensor(rows, len(rows))  # (sum positions,)
        inputs["read_cols"] = self.tensor([p for e in batch for p in e.positions], len(rows))
        return inputs

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        model_inputs = {k: v for k, v in inputs.items() if not k.startswith("read_")}
        hidden = self.backbone(**self.to_device(model_inputs))  # (B, T, H)
        return gather(hidden, inputs["read_rows"], inputs["read_cols"])  # (sum positions, H)
