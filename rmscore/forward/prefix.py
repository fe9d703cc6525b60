"""Shared-prompt reuse: N completions of one prompt pay for the prompt once.

For each group of rows with the same prompt_id, the longest common token prefix (computed on the
token ids, never assumed from the prompt text: templates can tokenize across the boundary) runs
once; its keys and values are then shared by the group's completions, which run as a right-padded
batch against that cache. Every token sees exactly the context it sees in a whole-sequence forward:
  prompt forward     (G, P_max) right-padded, causal, no mask: each prompt row is exact;
  completion forward (B, R_max) with position_ids starting at each group's P_g, and a 2-D mask over
                     [cached prompt | completion] that hides the prompt rows' padding.
Read positions inside the shared prompt (ArmoRM's gating token) come from the prompt forward.
Saves (N - 1) * P tokens per group; the run summary reports them.
"""

from __future__ import annotations

import torch

from rmscore.batching import plan_grouped
from rmscore.forward.base import Cost, Runner, padded_flat
from rmscore.forward.padded import PaddedForward
from rmscore.records import Encoded


class PrefixForward(Runner):
    name = "prompt-reuse"

    def __init__(self, model):
        super().__init__(model)
        self.fallback = PaddedForward(model)
        # Sliding-window layers keep only the last W keys: past the window the cache differs
        # from a whole-sequence forward, so such batches run padded instead.
        self.window = getattr(getattr(model.backbone, "config", None), "sliding_window", None)

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        groups = group_rows(encs)
        shared = [shared_prefix([encs[i].ids for i in g]) for g in groups]
        suffixes = [[len(encs[i]) - p for i in g] for g, p in zip(groups, shared)]
        planned = plan_grouped(shared, suffixes, max_tokens, max_rows)
        return [[groups[g][i] for g, members in batch for i in members] for batch in planned]

    def cost(self, batch: list[Encoded]) -> Cost:
        real = sum(len(e) for e in batch)
        groups = group_rows(batch)
        shared = [shared_prefix([batch[i].ids for i in g]) for g in groups]
        if self._too_long(batch) or max(shared) == 0:
            return self.fallback.cost(batch)
        computed = real - sum((len(g) - 1) * p for g, p in zip(groups, shared))
        r_max = max(len(batch[i]) - p for g, p in zip(groups, shared) for i in g)
        return Cost(real, computed, len(groups) * max(shared) + len(batch) * r_max)

    def collate(self, batch: list[Encoded]) -> dict:
        groups = group_rows(batch)
        shared = [shared_prefix([batch[i].ids for i in g]) for g in groups]
        p_max = max(shared)
        if self._too_long(batch) or p_max == 0:
            return {"fallback": self.fallback.collate(batch)}
        group_of = {i: k for k, g in enumerate(groups) for i in g}
        suffix = [batch[i].ids[shared[group_of[i]]:] for i in range(len(batch))]
        r_max = max(len(s) for s in suffix)
        mask = [[1] * shared[group_of[i]] + [0] * (p_max - shared[group_of[i]]) + [1] * len(s) + [0] * (r_max - len(s))
                for i, s in enumerate(suffix)]
        positions = [shared[group_of[i]] + j for i in range(len(batch)) for j in range(r_max)]
        prompts = [batch[g[0]].ids[:p] for g, p in zip(groups, shared)]
        return {
            "prompt_ids": self.tensor(padded_flat(prompts, p_max, self.model.pad_id), len(groups), p_max),
            "input_ids": self.tensor(padded_flat(suffix, r_max, self.model.pad_id), len(batch), r_max),
            "attention_mask": self.tensor([m for row in mask for m in row], len(batch), p_max + r_max),
            "position_ids": self.tensor(positions, len(batch), r_max),
            "row_group": torch.tensor([group_of[i] for i in range(len(batch))]),
            "gather": torch.tensor(self._gather_index(batch, shared, group_of, p_max, r_max, len(groups))),
        }

    def hidden(self, inputs: dict, batch: list[Encoded]) -> torch.Tensor:
        if "fallback" in inputs:
            return self.fallback.hidden(inputs["fallback"], batch)
        inputs = self.to_device(inputs)
        out = self.model.backbone(input_ids=inputs["prompt_ids"], use_cache=True)
        prompt_hidden, cache = out.last_hidden_state, out.past_key_values  # (G, P, H)
        cache.batch_select_indices(inputs["row_group"])  # one copy of its prompt's keys/values per row
        suffix_hidden = self.model.backbone(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"], past_key_values=cache, use_cache=True,
        ).last_hidden_state  # (B, R, H)
        flat = torch.cat([prompt_hidden.flatten(0, 1), suffix_hidden.flatten(0, 1)])  # (G*P + B*R, H)
        return flat[inputs["gather"]]  # (sum positions, H)

    def _gather_index(self, batch, shared, group_of, p_max, r_max, n_groups) -> list[int]:
        # Row-major offsets into cat(prompt_hidden (G, P_max), suffix_hidden (B, R_max)).
        index = []
        for i, e in enumerate(batch):
            g, p = group_of[i], shared[group_of[i]]
            index += [g * p_max + pos if pos < p else n_groups * p_max + i * r_max + pos - p for pos in e.positions]
        return index

    def _too_long(self, batch: list[Encoded]) -> bool:
        return bool(self.window) and max(len(e) for e in batch) > self.window


def group_rows(encs: list[Encoded]) -> list[list[int]]:
    """Indices of rows that share a prompt, in first-seen order (rows without a group stand alone)."""
    groups: dict[object, list[int]] = {}
    for i, e in enumerate(encs):
        groups.setdefault(e.group if e.group is not None else ("row", i), []).append(i)
    return list(groups.values())


def shared_prefix(rows: list[list[int]]) -> int:
    """Longest common token prefix of the rows, leaving every row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    first, n = rows[0], 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n
