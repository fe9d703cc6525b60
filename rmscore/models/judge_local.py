"""A judge that generates here, with transformers: batched, left-padded, greedy.

For small judges and for tests. Left padding puts every row's last prompt token in the same
column, where generation continues; the attention mask (from true lengths) keeps the pads out.
"""

from __future__ import annotations

import torch

from rmscore.models.judge_prompts import Reply


class LocalJudge:
    def __init__(self, model, tokenizer, pad_id: int, max_new_tokens: int, owner):
        self.model, self.tokenizer, self.pad_id = model, tokenizer, pad_id
        self.max_new_tokens, self.owner = max_new_tokens, owner  # owner.counts: the run's counts
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}

    def replies(self, rows: list[list[int]]) -> list[Reply]:
        width = max(len(r) for r in rows)
        ids = torch.tensor([[self.pad_id] * (width - len(r)) + r for r in rows], device=self.model.device)  # (B, T)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)  # (B, T)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None, pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos) or None,
            )  # (B, T + new)
        replies = [self._reply(row) for row in out[:, width:].tolist()]
        self.owner.counts.update(judge_requests=len(rows))
        return replies

    def _reply(self, new: list[int]) -> Reply:
        end = next((i for i, t in enumerate(new) if t in self.eos), None)
        self.owner.counts.update(judge_tokens_generated=len(new) if end is None else end + 1)
        kept = new if end is None else new[:end]
        finish = "stop" if end is not None else "length"
        return Reply(self.tokenizer.decode(kept, skip_special_tokens=True), finish)
