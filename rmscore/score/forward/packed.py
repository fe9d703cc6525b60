"""Padding-free batches: all rows of a batch laid end to end in one row, positions restarting at 0.

The traps (transformers 5, see docs/performance.md §1.5), each avoided here on purpose:
  - any 2-D attention mask, even all ones, disables packed-sequence detection on sdpa/eager/flex,
    and the sequences then attend to each other: we pass none;
  - so does a KV cache, which the default use_cache=True builds: the backbone runs use_cache=False;
  - the stock *ForSequenceClassification head pools one score per (packed) row: we gather each
    sequence's own positions at its offset instead.
On flash-attention backends the sequence boundaries go in as cu_seq_lens (no per-layer host sync);
on flex_attention transformers builds a block-sparse mask from the position ids. sdpa and eager
build a dense T x T mask, correct but quadratic: the auto path never packs on them.

flex_attention is compiled (transformers wraps it in torch.compile, and create_block_mask too),
and every new row length is a new shape: a recompile of tens of seconds on a GPU, and past
torch._dynamo's recompile limit (8) it runs uncompiled, materialising the T x T scores. So on flex
a packed row is padded, with a pad "sequence" of its own, to a few lengths only (bucket_length):
powers of two from 1,024 up to the budget. Rows packed up to the budget, as plan_packed packs
them, all take one shape.
"""

from __future__ import annotations

from itertools import accumulate

import torch

from rmscore.score.batching import plan_packed
from rmscore.score.forward.base import Cost, Runner, gather
from rmscore.score.records import Encoded


class PackedForward(Runner):
    name = "packed"
    layout = "packed"

    def __init__(self, model):
        super().__init__(model)
        self.bucketed = attn_implementation(model) == "flex_attention"  # compiled: few shapes, please
        self.max_tokens = 4096  # set by plan() and collate(): the budget, the largest bucket

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        self.max_tokens = max_tokens
        return plan_packed([len(e) for e in encs], max_tokens, max_rows)

    def cost(self, batch: list[Encoded]) -> Cost:
        real = sum(len(e) for e in batch)
        return Cost(real, real, self.width(real))

    def width(self, total: int) -> int:
        return bucket_length(total, self.max_tokens) if self.bucketed else total

    def collate(self, batch: list[Encoded], max_tokens: int | None = None) -> dict:
        if max_tokens is not None:
            self.max_tokens = max_tokens
        lengths = [len(e) for e in batch]
        pad = self.width(sum(lengths)) - sum(lengths)
        segments = lengths + ([pad] if pad else [])  # the pad tokens: one more sequence, read by nobody
        total = sum(segments)
        inputs = {
            "input_ids": self.tensor([t for e in batch for t in e.ids] + [self.model.pad_id] * pad, 1, total),  # (1, T)
            "position_ids": self.tensor([p for n in segments for p in range(n)], 1, total),  # (1, T)
        }
        if is_varlen(self.model):
            bounds = [0, *accumulate(segments)]
            inputs["cu_seq_lens_q"] = inputs["cu_seq_lens_k"] = self.tensor(bounds, len(bounds), dtype=torch.int32)
        starts = [0, *accumulate(lengths)][:-1]
        cols = [start + p for start, e in zip(starts, batch) for p in e.positions]
        inputs["read_rows"] = self.tensor([0] * len(cols), len(cols))  # (sum positions,)
        inputs["read_cols"] = self.tensor(cols, len(cols))
        return inputs

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        kwargs = self.to_device({k: v for k, v in inputs.items() if not k.startswith("read_")})
        if "cu_seq_lens_q" in kwargs:
            # Python ints: no device sync inside every attention layer.
            kwargs["max_length_q"] = kwargs["max_length_k"] = max(len(e) for e in batch)
        hidden = self.backbone(**kwargs)  # (1, T, H)
        return gather(hidden, inputs["read_rows"], inputs["read_cols"])  # (sum positions, H)


def bucket_length(total: int, budget: int) -> int:
    """The length a compiled (flex) packed row is padded to: the next power of two from 1,024,
    capped at the budget, never below the row itself (a row longer than the budget runs alone)."""
    return max(total, min(budget, 1 << max(10, (total - 1).bit_length())))


def attn_implementation(model) -> str:
    config = getattr(model.backbone, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "")


def is_varlen(model) -> bool:
    """Flash-attention kernels (pip packages or `kernels` hub copies, e.g. kernels-community/flash-attn3):
    they take sequence boundaries as cu_seq_lens instead of a mask."""
    from transformers.utils.generic import is_flash_attention_requested

    return is_flash_attention_requested(requested_attention_implementation=attn_implementation(model) or None)
