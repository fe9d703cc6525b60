"""The backbone forward: token ids in, hidden states at the read positions out.

This is the only place that builds model inputs, so padding rules live here once, for every family:
  - right padding; the pad id never matters because
  - causal decoders get no attention mask at all: a real token never attends to the pads after it,
    so each row computes exactly what it computes alone (and sdpa keeps its fast causal kernels);
  - encoders (bidirectional) get a mask built from the true lengths, never from the pad id;
  - the hidden states are gathered at each row's own read positions before any head runs, so a
    head never touches padding and never needs to find "the last non-pad token".
"""

from __future__ import annotations

import torch

from rmscore.records import Encoded


class PaddedForward:
    """Length-sorted rows, right-padded to the longest row of the batch."""

    name = "padded"

    def __init__(self, model):
        self.model = model

    def padded_tokens(self, batch: list[Encoded]) -> int:
        return len(batch) * max(len(e) for e in batch)

    @torch.inference_mode()
    def hidden_at(self, batch: list[Encoded]) -> torch.Tensor:
        model = self.model
        lengths = [len(e) for e in batch]
        width = max(lengths)
        flat = [t for e in batch for t in (*e.ids, *[model.pad_id] * (width - len(e)))]
        ids = torch.tensor(flat, dtype=torch.long).view(len(batch), width)  # (B, T)
        inputs = {"input_ids": ids}
        if not model.is_causal:
            positions = torch.arange(width).expand(len(batch), width)  # (B, T)
            inputs["attention_mask"] = (positions < torch.tensor(lengths)[:, None]).long()  # (B, T)
        if any(e.token_type_ids is not None for e in batch):
            types = [t for e in batch for t in (*(e.token_type_ids or [0] * len(e)), *[0] * (width - len(e)))]
            inputs["token_type_ids"] = torch.tensor(types, dtype=torch.long).view(len(batch), width)
        inputs = {k: v.to(model.device, non_blocking=True) for k, v in inputs.items()}
        out = model.backbone(**inputs, **model.backbone_kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, T, H)
        rows = torch.tensor([i for i, e in enumerate(batch) for _ in e.positions], device=hidden.device)
        cols = torch.tensor([p for e in batch for p in e.positions], device=hidden.device)
        return hidden[rows, cols]  # (sum of positions, H)

    def score(self, batch: list[Encoded]) -> list[dict]:
        with torch.inference_mode():
            return self.model.head(self.hidden_at(batch), batch)


def default_token_budget(model, max_length: int) -> int:
    """Padded tokens per forward when the user gives none. On CPU, small batches keep the
    attention matrices in cache; on a GPU the budget grows with free memory."""
    if model.device.type != "cuda":
        return max(4096, min(max_length, 16384))
    free, _ = torch.cuda.mem_get_info(model.device)
    hidden = getattr(model.backbone.config, "hidden_size", 4096)
    # ~40 bytes of live activations per hidden unit per token in bf16, MLP intermediates included
    per_token = 40 * hidden
    return int(max(max_length, min(262_144, free * 0.6 // per_token)))
