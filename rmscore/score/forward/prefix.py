"""Shared-prompt reuse: N completions of one prompt pay for the prompt once.

Rows with the same prompt_id form a group; their longest common token prefix (found on the token
ids, never assumed from the prompt text: templates can tokenize across the boundary) is the
group's prompt. The groups of a window are cut into stages, and a stage runs in two steps:
  1. its prompts, once each, as length-sorted padded rows; every layer's keys and values of their
     real tokens are kept, flat: (kv heads, prompt tokens of the stage, head dim);
  2. its completions' own tokens, as length-sorted padded rows mixing the stage's groups, in as
     many batches as the budget needs. Each row gathers its prompt's keys/values into a cache, its
     position ids continue after its prompt, and a 4-D mask lets each token see its own prompt (not
     the prompt padding) and its own earlier tokens: exactly what it sees in a whole-sequence
     forward, so scores equal the batch-size-1 ones. Read positions inside the prompt (ArmoRM's
     gating token) are read from the prompt's forward.

Why this layout: attention costs each completion token its own prompt plus itself, as in a
per-example forward, on every backend that takes a mask: dense on sdpa and eager, a BlockMask that
skips the prompt padding on flex. The earlier layout, one packed row [P | r1 | r2 ...] per group
under a prompt-aware mask, made every token pay for the whole row (T x T) on sdpa/eager, which ate
the saving once rows were longer than a few hundred tokens, and it could not split a group bigger
than the budget without repeating the prompt. Here completions sort by length across groups, so
their batches carry little padding, and a group of any size computes its prompt once.
Flash-attention kernels take no 4-D mask: there this runner falls back to padded rows.
"""

from __future__ import annotations

import inspect

import torch

from rmscore.score.batching import plan_batches, plan_stages, plan_suffixes
from rmscore.score.forward.base import Cost, Runner, padded_flat
from rmscore.score.forward.packed import attn_implementation
from rmscore.score.forward.padded import PaddedForward
from rmscore.score.records import Encoded

# Prompt tokens a stage holds at least: their keys/values stay on the device while the stage's
# completions run (128 KiB a token for an 8B model in bf16: 1 GiB). More groups per stage let
# completions of similar length share a batch.
STAGE_TOKENS = 8192
UNSEEN = 1 << 30  # the position given to prompt padding: after every query
MASK_KINDS = ("full_attention", "sliding_attention")  # layer kinds our masks can draw


class PrefixForward(Runner):
    name = "prompt-reuse"

    def __init__(self, model):
        super().__init__(model)
        self.fallback = PaddedForward(model)
        self.backend = attn_implementation(model) or "sdpa"
        self.kinds, self.window = mask_kinds(model)
        # transformers >= 5.2x names the cache argument `cache`; earlier 5.x `past_key_values`.
        params = inspect.signature(model.backbone.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.max_tokens, self.max_rows = 4096, 512  # set by plan(); sizes the batches inside a stage

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        self.max_tokens, self.max_rows = max_tokens, max_rows
        groups = group_rows(encs)
        shared = [shared_prefix([encs[i].ids for i in g]) for g in groups]
        stages = plan_stages(shared, max(max_tokens, STAGE_TOKENS))
        return [[i for g in stage for i in groups[g]] for stage in stages]

    def cost(self, batch: list[Encoded]) -> Cost:
        if self._unsupported():
            return self.fallback.cost(batch)
        layout = self._layout(batch, self.max_tokens)
        real = sum(len(e) for e in batch)
        computed = sum(layout.prefix) + sum(len(e) - layout.prefix[g] for e, g in zip(batch, layout.group_of))
        padded = sum(len(b) * max(layout.prefix[g] for g in b) for b in layout.prompts)
        padded += sum(len(b) * max(len(batch[i]) - layout.prefix[layout.group_of[i]] for i in b)
                      for b in layout.completions)
        return Cost(real, computed, padded, len(layout.prompts) + len(layout.completions))

    def collate(self, batch: list[Encoded], max_tokens: int | None = None) -> dict:
        if self._unsupported():
            return {"fallback": self.fallback.collate(batch)}
        if max_tokens is not None:
            self.max_tokens = max_tokens
        layout = self._layout(batch, self.max_tokens)
        slots: dict[tuple[int, int], int] = {}  # (row, read k) -> index in execution order
        prompts = [self._prompt_inputs(batch, layout, b, slots) for b in layout.prompts]
        completions = [self._completion_inputs(batch, layout, b, slots) for b in layout.completions]
        order = [slots[(i, k)] for i, e in enumerate(batch) for k in range(len(e.positions))]
        return {"prompts": prompts, "completions": completions, "order": self.tensor(order, len(order))}

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        if "fallback" in inputs:
            return self.fallback.hidden(inputs["fallback"], batch)
        reads, keys, values = [], [], []
        for step in inputs["prompts"]:
            cache = self._empty_cache()
            hidden = self.backbone(input_ids=self._dev(step["input_ids"]), **{self.cache_arg: cache})  # (B, T, H)
            keep = self._dev(step["keep"])  # (real prompt tokens,) flat (row, column) indices
            for layer, (k, v) in enumerate(_layers(cache)):
                if layer == len(keys):
                    keys.append([])
                    values.append([])
                keys[layer].append(_flat(k)[:, keep])  # (kv heads, real tokens, head dim)
                values[layer].append(_flat(v)[:, keep])
            reads.append(hidden.flatten(0, 1)[self._dev(step["reads"])])
        keys = [torch.cat(k, dim=1) for k in keys]  # per layer (kv heads, stage prompt tokens, head dim)
        values = [torch.cat(v, dim=1) for v in values]
        for step in inputs["completions"]:
            hidden = self.backbone(**self._completion_kwargs(step, keys, values))  # (B, R, H)
            reads.append(hidden.flatten(0, 1)[self._dev(step["reads"])])
        return torch.cat(reads)[self._dev(inputs["order"])]  # (sum positions, H) in batch order

    def _completion_kwargs(self, step: dict, keys: list, values: list) -> dict:
        kwargs = {"input_ids": self._dev(step["input_ids"]), "position_ids": self._dev(step["position_ids"])}
        if "kv_index" not in step:  # no row of this batch has a shared prompt: a plain causal forward
            return kwargs
        index = self._dev(step["kv_index"])  # (B, P) flat prompt-token index, 0 on padding
        cache = self._empty_cache()
        for layer, (k, v) in enumerate(zip(keys, values)):
            cache.update(k[:, index].transpose(0, 1), v[:, index].transpose(0, 1), layer)  # (B, kv, P, hd)
        kwargs[self.cache_arg] = cache
        kwargs["attention_mask"] = self._mask(self._dev(step["prompt_lengths"]), index.shape[1], kwargs["input_ids"].shape[1])
        return kwargs

    def _mask(self, prompt: torch.Tensor, width: int, length: int):
        """Masks (B, 1, R, P + R), one per kind of layer. Key k < P is prompt token k of the row,
        key P + j its own token j. Each key gets its position (k, or prompt + j; prompt padding a
        position no query reaches), so a query at position prompt + q sees the keys at or before
        it, and on a sliding layer only those fewer than `window` positions behind."""
        k = torch.arange(width + length, device=prompt.device)
        own = prompt[:, None] + k - width  # (B, K)
        key_pos = torch.where(k < width, torch.where(k < prompt[:, None], k, UNSEEN), own)  # (B, K)
        masks = {kind: self._draw(prompt, key_pos, length, kind == "sliding_attention") for kind in self.kinds}
        return masks if len(masks) > 1 else next(iter(masks.values()))

    def _draw(self, prompt: torch.Tensor, key_pos: torch.Tensor, length: int, sliding: bool):
        window = self.window
        if self.backend == "flex_attention":
            # A BlockMask: blocks of prompt padding are skipped, not computed. The rule reads no
            # tensor indexed by the query (Inductor's CPU flex template miscompiles those).
            from torch.nn.attention.flex_attention import create_block_mask

            def allowed(b, h, q, k):
                behind = prompt[b] + q - key_pos[b, k]
                return (behind >= 0) & (behind < window) if sliding else behind >= 0

            batch, keys = key_pos.shape
            return create_block_mask(allowed, batch, None, length, keys, device=key_pos.device)
        query_pos = prompt[:, None] + torch.arange(length, device=prompt.device)  # (B, R)
        behind = query_pos[:, :, None] - key_pos[:, None, :]  # (B, R, K)
        allowed = (behind >= 0) & (behind < window) if sliding else behind >= 0
        return self._format(allowed[:, None])  # (B, 1, R, K)

    def _format(self, allowed: torch.Tensor) -> torch.Tensor:
        # Additive (0 / dtype min), as eager needs; sdpa takes it as is and would convert a bool mask
        # to this itself on every layer (measured on CPU: attention 12% faster when given it).
        dtype = next(self.model.backbone.parameters()).dtype
        return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)

    def _unsupported(self) -> bool:
        # Our 4-D mask replaces the model's own: only for backends that take one, and layer kinds we can draw.
        return self.backend not in ("sdpa", "eager", "flex_attention") or not self.kinds <= set(MASK_KINDS)

    def _empty_cache(self):
        from transformers import DynamicCache

        return DynamicCache()

    def _dev(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.model.device, non_blocking=True)

    def _layout(self, batch: list[Encoded], max_tokens: int) -> "Layout":
        return Layout(batch, max_tokens, self.max_rows)

    def _prompt_inputs(self, batch, layout: "Layout", rows: list[int], slots: dict) -> dict:
        """One padded batch of prompts (rows are groups); keep = flat indices of their real tokens."""
        width = max(layout.prefix[g] for g in rows)
        ids = [batch[layout.groups[g][0]].ids[:layout.prefix[g]] for g in rows]
        keep = [r * width + t for r, g in enumerate(rows) for t in range(layout.prefix[g])]
        reads = []
        for r, g in enumerate(rows):
            for i in layout.groups[g]:
                for k, q in enumerate(batch[i].positions):
                    if q < layout.prefix[g]:
                        slots[(i, k)] = len(slots)
                        reads.append(r * width + q)
        return {"input_ids": self.tensor(padded_flat(ids, width, self.model.pad_id), len(rows), width),
                "keep": self.tensor(keep, len(keep)), "reads": self.tensor(reads, len(reads))}

    def _completion_inputs(self, batch, layout: "Layout", rows: list[int], slots: dict) -> dict:
        """One padded batch of completions (each row's tokens after its group's prompt)."""
        prefix = [layout.prefix[layout.group_of[i]] for i in rows]
        own = [batch[i].ids[p:] for i, p in zip(rows, prefix)]
        width = max(len(o) for o in own)
        reads = []
        for r, (i, p) in enumerate(zip(rows, prefix)):
            for k, q in enumerate(batch[i].positions):
                if q >= p:
                    slots[(i, k)] = len(slots)
                    reads.append(r * width + q - p)
        step = {"input_ids": self.tensor(padded_flat(own, width, self.model.pad_id), len(rows), width),
                "position_ids": self.tensor([p + t for p in prefix for t in range(width)], len(rows), width),
                "reads": self.tensor(reads, len(reads))}
        keys = max(prefix)
        if keys:
            base = [layout.offset[layout.group_of[i]] for i in rows]
            index = [b + t if t < p else 0 for b, p in zip(base, prefix) for t in range(keys)]
            step["kv_index"] = self.tensor(index, len(rows), keys)
            step["prompt_lengths"] = self.tensor(prefix, len(rows))
        return step


class Layout:
    """Where each row of a stage goes: its group, the group's shared prompt length, the prompt
    batches (lists of groups with a prompt) and the completion batches (lists of rows)."""

    def __init__(self, batch: list[Encoded], max_tokens: int, max_rows: int):
        self.groups = group_rows(batch)
        self.prefix = [shared_prefix([batch[i].ids for i in g]) for g in self.groups]
        self.group_of = [0] * len(batch)
        for g, members in enumerate(self.groups):
            for i in members:
                self.group_of[i] = g
        with_prompt = [g for g, p in enumerate(self.prefix) if p]
        self.prompts = [[with_prompt[b] for b in batch_] for batch_ in
                        plan_batches([self.prefix[g] for g in with_prompt], max_tokens, max_rows)] if with_prompt else []
        # Flat prompt-token offset of each group, in the order the prompt batches keep them.
        self.offset = [0] * len(self.groups)
        total = 0
        for rows in self.prompts:
            for g in rows:
                self.offset[g] = total
                total += self.prefix[g]
        prefix = [self.prefix[g] for g in self.group_of]
        suffix = [len(e) - p for e, p in zip(batch, prefix)]
        self.completions = plan_suffixes(prefix, suffix, max_tokens, max_rows)


def _layers(cache):
    """(keys, values) of every layer: (B, kv heads, T, head dim) each."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _flat(states: torch.Tensor) -> torch.Tensor:
    """(B, kv, T, hd) -> (kv, B * T, hd), token (b, t) at b * T + t."""
    return states.transpose(0, 1).flatten(1, 2)


def mask_kinds(model) -> tuple[set[str], int | None]:
    """The kinds of attention layer a 4-D mask must be drawn for, and the sliding window. A model
    with mixed kinds (Gemma-2: sliding and full) takes {kind: mask}; one kind takes the mask alone."""
    config = getattr(model.backbone, "config", None)
    window = getattr(config, "sliding_window", None)
    kinds = set(getattr(config, "layer_types", None) or ())
    return kinds or {"sliding_attention" if window else "full_attention"}, window


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
