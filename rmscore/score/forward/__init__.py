"""Forward runners: how a batch of token rows goes through the backbone. See base.py for the
contract; padded.py, packed.py and prefix.py for the three layouts, and choose() for when each runs."""

from __future__ import annotations

import torch

from rmscore.score.forward.base import Cost, Runner
from rmscore.score.forward.bucketed import BucketedForward
from rmscore.score.forward.packed import PackedForward, attn_implementation, is_varlen
from rmscore.score.forward.padded import PaddedForward
from rmscore.score.forward.prefix import PrefixForward, group_rows, shared_prefix
from rmscore.score.records import Encoded

# Prompt reuse costs a second forward per stage and copies of the prompt's keys/values: below
# this fraction of tokens saved, sorted padding is as fast and simpler.
MIN_REUSE_SAVING = 0.15

__all__ = ["Cost", "Runner", "PaddedForward", "PackedForward", "PrefixForward", "BucketedForward", "Runners",
           "default_token_budget"]


class Runners:
    """The runners of one model, and the choice between them for each window of rows."""

    def __init__(self, model, path: str = "auto", batch_invariant: bool = False):
        self.model, self.path, self.batch_invariant = model, path, batch_invariant
        self.padded = PaddedForward(model)
        self.packed = PackedForward(model)
        self.prefix = PrefixForward(model)
        self.bucketed = BucketedForward(model)

    def choose(self, encs: list[Encoded]) -> Runner:
        if self.batch_invariant:  # the one path whose bits never depend on the batch (bucketed.py)
            return self.bucketed
        if not self.model.is_causal:
            return self.padded  # encoders attend both ways: no packing, no shared prompt
        if self.path != "auto":
            return {"padded": self.padded, "packed": self.packed, "prompt-reuse": self.prefix}[self.path]
        backend = attn_implementation(self.model) or "sdpa"
        # Prompt reuse needs a prompt-aware mask, which flash-attention kernels cannot take.
        if backend in ("sdpa", "eager", "flex_attention") and reuse_saving(encs) >= MIN_REUSE_SAVING:
            return self.prefix
        if backend == "flex_attention" or is_varlen(self.model):  # packed rows cost no T x T here
            return self.packed
        return self.padded


def reuse_saving(encs: list[Encoded]) -> float:
    """Fraction of tokens that shared-prompt reuse would not compute for these rows."""
    total = sum(len(e) for e in encs)
    saved = 0
    for group in group_rows(encs):
        if len(group) > 1:
            saved += (len(group) - 1) * shared_prefix([encs[i].ids for i in group])
    return saved / total if total else 0.0


def default_token_budget(model, max_length: int) -> int:
    """Padded tokens per forward when the user gives none.

    CPU: 512 (measured, bench/RESULTS.md). One thread runs a GEMM as fast at a few hundred rows as
    at thousands, so a bigger budget buys nothing; it only batches rows of unequal length together
    (padding, and on prompt reuse padded prompt keys every query attends over). That holds on long
    rows too: a row longer than the budget runs alone, without padding, and prompt reuse still
    shares its prompt (the budget sizes the forwards inside a stage, not the stage). 512 was the
    fastest of 512-4096 for padded and prompt reuse on the short-row and the long-row presets.
    GPU: fill what is free after the weights, at the bytes one token needs mid-forward (residual,
    normed and attention activations 2*d, MLP gate/up/act 3*I, x1.5 for allocator slack) plus the
    keys and values a reused prompt holds. Capped at 64k tokens: GEMMs are long saturated by then,
    and the OOM back-off catches what this estimate misses.
    """
    if model.device.type != "cuda":
        return 512
    config = model.backbone.config
    hidden = getattr(config, "hidden_size", 4096)
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", 32)
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    size = next(model.backbone.parameters()).element_size()
    per_token = size * (3 * (2 * hidden + 3 * inter) // 2 + 2 * getattr(config, "num_hidden_layers", 32) * kv * head_dim)
    free, _ = torch.cuda.mem_get_info(model.device)
    return int(max(max_length, min(65_536, free * 0.8 // per_token)))
