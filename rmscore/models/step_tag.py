"""Step-tag process reward models: a causal LM trained to predict a good or bad token at a tag.

Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm) and any LM trained the same way. As its
card: the input is f"{question} {output}", where every step ends with " ки" and steps are joined
by "\\n"; tokenizer.encode adds BOS; every position holding the tag id is read and
P(good) = softmax over the [good, bad] token logits -> [0]. Tag and label tokens are data
(--step-tokens "ки + -"), and their ids are derived from the tokenizer as the card does.
The tag is a word: "ки" inside "русский" is no tag. A completion is already tagged, by the card's
rule, when the tag ends every (non-blank) line: each line is then one step. One with the tag
ending some lines but not others, or inside a tagged line, does not fit the card's format and
is flagged (invalid_row); one with no line ending in the tag is split one step per line. Tags
inside the question or the given steps are removed first (the card's advice), so the tags in the
input are exactly one per step. Steps are always rendered in the card's format.
A text already in that format (serve) is read at every tag, each ending its line; a tag inside a
line is flagged, and so is text after the last tag. Only a question line that itself ends with
the tag cannot be told from a step: it is read as one.

Only the two label rows of the LM head are kept (fp32, applied to the gathered hidden states):
the (tokens x vocabulary) logits are never computed.
"""

from __future__ import annotations

import torch
from torch import nn

from rmscore.errors import ModelError, RowError
from rmscore.models import loading
from rmscore.models.steps import ProcessRewardModel, tag_positions, trim_specials
from rmscore.score import records
from rmscore.score.records import Encoded, Sample


def load_label_head(self, cfg, label_ids: list[int]) -> nn.Linear:
    """Load a causal LM: set self.backbone, return an fp32 Linear(H, 2) of the label tokens' rows
    of the LM head. The full head is dropped with the wrapper once the backbone is taken."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.path, **loading.pretrained_kwargs(cfg, self.device, self.dtype))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {cfg.path} as a causal LM: {str(exc).splitlines()[0]}") from exc
    self.device = loading.place(model, cfg, self.device)
    self.backbone = getattr(model, model.base_model_prefix)
    return loading.label_rows(model, label_ids)


def label_probability(head: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden.to(head.weight.device, torch.float32))  # (N, 2): [good, bad]
    return logits.softmax(-1)[:, 0]  # (N,) P(good)


class StepTagModel(ProcessRewardModel):
    name = "step-tag"
    summary = "causal LMs that predict a good/bad token at a tag after each step (Math-Shepherd)"
    reads = ("every step tag in f'{question} {step 1} ки\\n{step 2} ки...' (BOS, no chat template); steps: "
             "the steps column; a completion whose every line ends with ' ки' (one step per line); else one per line")
    outputs = "step_scores = softmax over the [good, bad] token logits -> P(good); score_min/prod/mean/last"
    examples = "peiyi9979/math-shepherd-mistral-7b-prm (--step-tokens 'ки + -' is the default)"
    separator = "\n"  # the card's solutions have one step per line
    tag, good, bad = "ки", "+", "-"
    tag_is_word = True  # the card writes " ки"; Russian words may hold the letters "ки"
    takes_step_tokens = True
    loads_gguf = True  # a stock *ForCausalLM (rmscore/models/base.py)

    @classmethod
    def load(cls, cfg, hf_config):
        self = cls.start(cfg, hf_config)
        if cfg.step_tokens:
            self.tag, self.good, self.bad = cfg.step_tokens.split()
        tok = self.tokenizer
        self.tag_id = tok.encode(self.tag, add_special_tokens=False)[-1]  # card: encode("ки")[-1]
        labels = tok.encode(f"{self.good} {self.bad}", add_special_tokens=False)  # card: encode("+ -")[1:]
        if len(labels) != 2:
            raise ModelError(f"'{self.good} {self.bad}' is {len(labels)} tokens for this tokenizer, not 2",
                             "choose label tokens that are one token each with --step-tokens")
        self.label_ids = labels
        self.label_head = load_label_head(self, cfg, labels)
        return self

    def tagged_steps(self, text: str) -> list[str] | None:
        """By the card's format: tagged when the tag ends a line; then it must end every line
        that is not blank, each line is one step, and no tag stands inside a line."""
        lines = {k + 1: line.rstrip() for k, line in enumerate(text.split("\n")) if line.strip()}
        pattern = self.tag_pattern()
        ends = {k: pattern.search(line, len(line) - len(self.tag)) is not None for k, line in lines.items()}
        if not any(ends.values()):
            return None
        untagged = [str(k) for k, end in ends.items() if not end]
        if untagged:
            raise RowError(records.INVALID_ROW, f"the step tag {self.tag!r} ends some lines but not line "
                           f"{', '.join(untagged)}: the card's format is one step per line, each ending with "
                           f"' {self.tag}'; tag every line, or give the steps in a steps column")
        steps = {k: line[:-len(self.tag)].strip() for k, line in lines.items()}
        inside = [str(k) for k, step in steps.items() if pattern.search(step)]
        if inside:
            raise RowError(records.INVALID_ROW, f"line {', '.join(inside)} holds the step tag {self.tag!r} before its "
                           "end: the card's tags end lines, one step per line")
        return list(steps.values())

    def prepare(self, sample: Sample, steps: list[str]) -> tuple[str, int]:
        output = "\n".join(f"{step} {self.tag}" for step in steps)
        return f"{self.untag(self.question(sample)[1])} {output}", len(steps)

    def encode_prepared(self, prepared: list[tuple[str, int]]) -> list[Encoded]:
        if not prepared:
            return []
        texts, counts = zip(*prepared)
        ids = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]  # card: tokenizer.encode
        return tag_positions(ids, list(counts), self.tag_id)

    def read_rendered(self, text: str) -> tuple[str, int]:
        """The card's input_for_prm: read at every tag, each ending its line. The BOS that
        tokenizer.encode adds is taken off the text's start (never doubled), padding and EOS off its ends."""
        tok = self.tokenizer
        text = trim_specials(text, [tok.pad_token, tok.bos_token], [tok.pad_token, tok.eos_token])
        steps = self.tagged_text(text)
        lines = text.split("\n")
        inside = [str(k + 1) for k, line in enumerate(lines)
                  if any(line[m.end():].strip() for m in self.tag_pattern().finditer(line))]
        if inside:
            raise RowError(records.INVALID_ROW, f"line {', '.join(inside)} of {len(lines)} holds the step tag "
                           f"{self.tag!r} before its end: the card's tags end lines ({self.rendered_format})")
        return text, steps

    encode_read = encode_prepared  # the same (text, steps) pairs

    @property
    def rendered_format(self) -> str:
        return f"f'{{question}} {{step 1}} {self.tag}\\n{{step 2}} {self.tag}...', each step's line ended by the tag"

    def step_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return label_probability(self.label_head, hidden)

    def metadata(self) -> dict:
        return {**super().metadata(), "label_tokens": [self.good, self.bad], "label_ids": self.label_ids,
                "step_tag_id": self.tag_id}
