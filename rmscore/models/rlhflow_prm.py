"""RLHFlow process reward models: a chat LM that answers "+" or "-" after each step.

RLHFlow/Llama3.1-8B-PRM-Deepseek-Data (and -Mistral-Data). The reference (math-rm/prm_evaluate.py)
builds the conversation user = step (the first: question + " " + step), assistant = "+", and for
each step k re-scores the conversation up to step k, reading logits[:, -3] (the token before the
assistant's "+") -> softmax over [+, -] -> [0]. That is one forward per step. Here the whole
conversation is scored once and the position before each assistant "+" is read: a causal LM gives
that position the same hidden state with or without the turns that follow.
That conversation already rendered as text (serve) is read the same way: mended at its ends as
every chat family's (chat.RenderedText), then read before each assistant "+"; a reply that is not
"+", or a last step left without one, is flagged.
"""

from __future__ import annotations

import re
from bisect import bisect_left

import torch

from rmscore.errors import ModelError, RowError
from rmscore.models import chat, loading
from rmscore.models.step_tag import label_probability, load_label_head
from rmscore.models.steps import ProcessRewardModel, without_specials
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

# Stands in for each assistant "+" while rendering, so its place in the text is known exactly;
# one character long, like "+", so no offset moves when it is swapped back.
MARK = "\ue000"


class RlhflowPrmModel(ProcessRewardModel):
    name = "rlhflow-prm"
    summary = "chat LMs that answer '+' or '-' to each step, one user turn per step (RLHFlow PRMs)"
    reads = ("the token before each assistant '+' of the step conversation, in one pass; steps: the steps "
             "column, else split on blank lines")
    outputs = "step_scores = softmax over the ['+', '-'] logits -> P('+'); score_min/prod/mean/last"
    examples = "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data (steps split on blank lines, as its evaluation code)"
    separator = "\n\n"
    good, bad = "+", "-"
    rendered_format = ("its reference's conversation rendered with its chat template: one user turn per step (the "
                       "first: question + ' ' + step), each answered by an assistant '+'")

    @classmethod
    def load(cls, cfg, hf_config):
        self = cls.start(cfg, hf_config)
        self.template = chat.require_template(self.tokenizer, cfg)
        good, bad = (self.tokenizer.encode(t, add_special_tokens=False) for t in (self.good, self.bad))
        if len(good) != 1:
            raise ModelError(f"{self.good!r} is not one token for this tokenizer, so its logit cannot be read")
        self.label_ids = [good[-1], bad[-1]]  # reference: tokenizer.encode('+')[-1], the same for '-'
        self.label_head = load_label_head(self, cfg, self.label_ids)
        return self

    def prepare(self, sample: Sample, steps: list[str]) -> list[dict]:
        _, text = self.question(sample)
        if MARK in text or any(MARK in s for s in steps):
            raise RowError(records.INVALID_ROW, "the text contains U+E000, which rmscore uses as a marker")
        turns = []  # the reference's conversation has no system turn (the template adds its date header)
        for k, step in enumerate(steps):
            turns += [{"role": "user", "content": f"{text} {step}" if k == 0 else step},
                      {"role": "assistant", "content": MARK}]
        return turns

    def encode_prepared(self, prepared: list[list[dict]]) -> list[Encoded]:
        marked = chat.render(self.tokenizer, prepared)
        return self.encode_read(list(zip(marked, [len(turns) // 2 for turns in prepared])))

    def read_rendered(self, text: str) -> tuple[str, int]:
        """The reference's conversation as rendered text: each assistant reply must be the "+"
        that is read, and the text must end with one (a last step left unanswered is unscored)."""
        text = self.rendered_text(text)
        if MARK in text:
            raise RowError(records.INVALID_ROW, "the text contains U+E000, which rmscore uses as a marker")
        opener, close = self.reply_opener, self.rendered_text.end.strip()
        replies = [m.end() for m in re.finditer(re.escape(opener), text)] if opener else []
        if not replies:
            raise RowError(records.INVALID_ROW, f"no assistant reply in the text: {self.name} reads "
                                                f"{self.rendered_format}")
        wrong = [str(k + 1) for k, at in enumerate(replies) if not text.startswith(self.good + close, at)]
        if wrong:
            raise RowError(records.INVALID_ROW, f"assistant reply {', '.join(wrong)} of {len(replies)} is not "
                           f"{self.good!r}: {self.name} reads the token before each {self.good!r} reply")
        if without_specials(self.tokenizer, text[replies[-1] + len(self.good):]).strip():
            raise RowError(records.INVALID_ROW, f"text after the last {self.good!r} reply would not be scored: "
                           f"answer every step's user turn with {self.good!r}")
        marked = list(text)
        for at in replies:
            marked[at] = MARK  # the "+" read after, as encode_prepared marks it
        return "".join(marked), len(replies)

    def encode_read(self, read: list[tuple[str, int]]) -> list[Encoded]:
        """(text with MARK for each "+" read after, step count) pairs -> ids and positions."""
        marked = [m for m, _ in read]
        texts = [t.replace(MARK, self.good) for t in marked]
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)  # = tokenize=True
        return [self._positions(ids, offsets, text, steps)
                for ids, offsets, text, (_, steps) in zip(enc["input_ids"], enc["offset_mapping"], marked, read)]

    def _positions(self, ids: list[int], offsets: list[tuple[int, int]], marked: str, steps: int) -> Encoded:
        starts = [start for start, _ in offsets]
        positions = []
        for char in (m.start() for m in re.finditer(MARK, marked)):
            token = bisect_left(starts, char)  # the token that starts at the assistant's "+"
            if token < len(ids) and starts[token] == char and ids[token] == self.label_ids[0]:
                positions.append(token - 1)  # the reference's logits[:, -3]: the token before "+"
        return Encoded(ids, positions, expected_positions=steps)

    def step_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return label_probability(self.label_head, hidden)

    def metadata(self) -> dict:
        return {**super().metadata(), "template_hash": loading.template_hash(self.template),
                "date_string": chat.PINNED_DATE, "label_ids": self.label_ids}
