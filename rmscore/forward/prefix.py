"""Shared-prompt reuse: N completions of one prompt pay for the prompt once.

Rows with the same prompt_id form a group. Their longest common token prefix (found on the token
ids, never assumed from the prompt text: templates can tokenize across the boundary) is laid down
once, followed by each row's remaining tokens, and several groups share one packed row:

    [ P1 | r11 | r12 | r13 | P2 | r21 | r22 | ... ]      position ids: P 0..p-1, each r p..p+len-1

A mask lets each completion see its own prompt and itself (causally) and nothing else, so every
token computes exactly what it computes in a whole-sequence forward, with no padding anywhere.
Read positions inside the shared prompt (ArmoRM's gating token) are gathered from the prompt's span.

The mask is handed to the model as a finished 4-D mask (transformers passes those through): a
block-sparse BlockMask on flex_attention (GPU: masked blocks are skipped), a dense bool mask on
sdpa and an additive one on eager (exact, but quadratic in the row length, so rows are capped).
Flash-attention kernels cannot take such a mask; there the padded path runs instead.

Why not a KV cache (prompt forward, then the completions against a repeated cache)? Completions of
one prompt vary widely in length, so the completion batch is mostly padding: simulated on the
benchmark's length mix it computes ~2x the real tokens, where this layout computes ~0.78x.
"""

from __future__ import annotations

from itertools import accumulate

import torch

from rmscore.batching import plan_units
from rmscore.forward.base import Cost, Runner
from rmscore.forward.packed import attn_implementation
from rmscore.forward.padded import PaddedForward
from rmscore.records import Encoded

DENSE_ROW_LIMIT = 8192  # tokens per packed row when the mask is dense: T^2 entries
MASKABLE = ("sdpa", "eager", "flex_attention")


class PrefixForward(Runner):
    name = "prompt-reuse"

    def __init__(self, model):
        super().__init__(model)
        self.fallback = PaddedForward(model)
        self.backend = attn_implementation(model) or "sdpa"
        # Our mask replaces the model's own; a sliding window would cut long rows differently.
        self.window = getattr(getattr(model.backbone, "config", None), "sliding_window", None)

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        if self.backend != "flex_attention":
            max_tokens = min(max_tokens, DENSE_ROW_LIMIT)
        groups = group_rows(encs)
        shared = [shared_prefix([encs[i].ids for i in g]) for g in groups]
        suffixes = [[len(encs[i]) - p for i in g] for g, p in zip(groups, shared)]
        return [[groups[g][i] for g, members in batch for i in members]
                for batch in plan_units(shared, suffixes, max_tokens, max_rows)]

    def cost(self, batch: list[Encoded]) -> Cost:
        if self._unsupported(batch):
            return self.fallback.cost(batch)
        real = sum(len(e) for e in batch)
        shared = sum((len(g) - 1) * shared_prefix([batch[i].ids for i in g]) for g in group_rows(batch))
        return Cost(real, real - shared, real - shared)

    def collate(self, batch: list[Encoded]) -> dict:
        if self._unsupported(batch):
            return {"fallback": self.fallback.collate(batch)}
        spans, owner, starts, reads = self._layout(batch)
        ids = [t for span in spans for t in span]
        positions = [p for span, start in zip(spans, starts) for p in range(start, start + len(span))]
        segment = [s for s, span in enumerate(spans) for _ in span]
        return {
            "input_ids": self.tensor(ids, 1, len(ids)),  # (1, T)
            "position_ids": self.tensor(positions, 1, len(ids)),  # (1, T)
            "segment": torch.tensor(segment),  # (T,) which span each token belongs to
            "prompt": torch.tensor([owner[s] for s in segment]),  # (T,) the span of its prompt
            "reads": torch.tensor(reads),  # (sum positions,) flat token index of each read
        }

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        if "fallback" in inputs:
            return self.fallback.hidden(inputs["fallback"], batch)
        device = self.model.device
        mask = self._mask(inputs["segment"].to(device), inputs["prompt"].to(device))
        hidden = self.backbone(input_ids=inputs["input_ids"].to(device, non_blocking=True),
                               position_ids=inputs["position_ids"].to(device, non_blocking=True),
                               attention_mask=mask)  # (1, T, H)
        return hidden[0, inputs["reads"].to(hidden.device)]  # (sum positions, H)

    def _layout(self, batch: list[Encoded]):
        """Spans of the packed row (a prompt, then its completions' own tokens), the prompt span of
        each span, each span's first position id, and the flat index of every read position."""
        spans: list[list[int]] = []
        owner: list[int] = []  # the span each span may attend to besides itself
        starts: list[int] = []  # position id of each span's first token
        placed: dict[int, tuple[int, int, int]] = {}  # row -> (prompt span, own span, shared length)
        for group in group_rows(batch):
            p = shared_prefix([batch[i].ids for i in group])
            prompt_span = len(spans)
            if p:
                spans.append(batch[group[0]].ids[:p])
                owner.append(prompt_span)
                starts.append(0)
            for i in group:
                own = len(spans)
                placed[i] = (prompt_span, own, p)
                spans.append(batch[i].ids[p:])
                owner.append(prompt_span if p else own)
                starts.append(p)
        offsets = [0, *accumulate(len(s) for s in spans)]
        reads = []
        for i, e in enumerate(batch):
            prompt_span, own, p = placed[i]
            reads += [offsets[prompt_span] + q if q < p else offsets[own] + q - p for q in e.positions]
        return spans, owner, starts, reads

    def _mask(self, segment: torch.Tensor, prompt: torch.Tensor):
        """May key k be seen from query q? Causal, and k is in q's own span or in q's prompt."""
        if self.backend == "flex_attention":
            from torch.nn.attention.flex_attention import create_block_mask

            def allowed(b, h, q, k):
                return (k <= q) & ((segment[k] == segment[q]) | (segment[k] == prompt[q]))

            size = segment.numel()
            return create_block_mask(allowed, 1, None, size, size, device=segment.device)
        index = torch.arange(segment.numel(), device=segment.device)
        keep = (index[None, :] <= index[:, None]) & (
            (segment[None, :] == segment[:, None]) | (segment[None, :] == prompt[:, None]))  # (T, T)
        if self.backend == "eager":  # eager adds the mask to the scores
            dtype = next(self.model.backbone.parameters()).dtype
            zero = torch.zeros((), dtype=dtype, device=segment.device)
            return torch.where(keep, zero, torch.finfo(dtype).min)[None, None]  # (1, 1, T, T)
        return keep[None, None]  # (1, 1, T, T)

    def _unsupported(self, batch: list[Encoded]) -> bool:
        too_long = bool(self.window) and max(len(e) for e in batch) > self.window
        return self.backend not in MASKABLE or too_long


def group_rows(encs: list[Encoded]) -> list[list[int]]:
    """Indices of rows that share a prompt, in first-seen order (rows without a group stand alone)."""
    groups: dict[object, list[int]] = {}
    for i, e in enumerate(encs):
        groups.setdefault(e.group if e.group is not None else ("row", i), []).append(i)
    return list(groups.values())


def shared_prefix(rows: list[list[int]]) -> int:
    """Longest common token prefix of a group (0 for a single row: nothing to share), leaving
    every row at least one token of its own."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - 1
    # The common prefix of all rows is that of the lexicographically first and last ones, which
    # min/max find at C speed: one Python loop over one pair, not over every row.
    low, high, n = min(rows), max(rows), 0
    while n < limit and low[n] == high[n]:
        n += 1
    return n
