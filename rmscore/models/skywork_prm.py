"""Skywork-o1-Open-PRM: a Qwen2.5 causal LM with a value head read at the newline after each step.

Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B and -7B (config architectures: Qwen2ForPrmModel). The
reference (SkyworkAI/skywork-o1-prm-inference) wraps the LM in a trl-style PRM_MODEL whose
`v_head.summary` = Linear(h, 1) is saved under the `v_head.` prefix; SkyworkPrmNetwork has the
same names (model.*, v_head.summary.*) and skips the unused lm_head. Input, as prepare_input():
encode(bos_token + problem + "\\n"), then for each piece of response.split("\\n"): encode(piece)
(nothing for an empty piece) + the newline id, flagged; value = sigmoid(v_head) at the flags.
The input keeps every piece exactly as the reference builds it (line endings normalised), but a
piece that is only whitespace (a blank line) is no step: its newline is in the input, not read.
--step-separator only changes how text is cut into pieces; the token read after each piece is
always the newline the model was trained on (`read_token`). Given a `steps` column, each step is
one piece (a step spanning lines is read at its end).
A text already rendered in that format (serve) is not read: nothing in it tells a problem that
spans lines (26 of the 101 PRM800K test problems in data/) from its steps, and re-tokenizing it whole
gives other tokens than the reference's piece-by-piece encode (BPE can merge a blank line's two
newlines, or a full stop and its newline, into one token: not the newline id the reference reads).
Every such row is invalid_row with that reason.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel

from rmscore.errors import ModelError, RowError
from rmscore.models.native import from_checkpoint
from rmscore.models.steps import ProcessRewardModel, normalize_newlines
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

ARCHITECTURE = "Qwen2ForPrmModel"


class ValueHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.summary = nn.Linear(hidden, 1)  # trl's name; its dropout is off in eval


class SkyworkPrmNetwork(Qwen2PreTrainedModel):
    config_class = Qwen2Config
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]  # the LM head is saved but never read

    def __init__(self, config: Qwen2Config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.v_head = ValueHead(config.hidden_size)
        self.post_init()


class SkyworkPrmModel(ProcessRewardModel):
    name = "skywork-prm"
    summary = "Skywork-o1-Open-PRM: Qwen2.5 LM + value head, native (no remote code)"
    reads = ("the newline token appended after each step (bos + problem + newline first); steps: the steps "
             "column, else every non-blank line (blank lines stay in the input, unread); --step-separator changes "
             "the cut, never the newline read")
    outputs = "step_scores = sigmoid(value head); score_min/prod/mean/last"
    examples = "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B, Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B"
    separator = "\n"  # how the reference cuts a response into pieces (its step_token)
    read_token = "\n"  # what follows each piece and is read: the model was trained on it, whatever cuts

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        return ARCHITECTURE in (hf_config.get("architectures") or [])

    @classmethod
    def load(cls, cfg, hf_config):
        self = cls.start(cfg, hf_config)
        if self.tokenizer.bos_token is None:
            raise ModelError(f"the tokenizer of {cfg.path} has no bos_token, which the Skywork PRM input starts with",
                             "use the tokenizer shipped with the checkpoint")
        self.step_id = self.tokenizer.encode(self.read_token, add_special_tokens=False)[-1]  # 198 for "\n"
        network, self.device = from_checkpoint(SkyworkPrmNetwork, cfg, None, self.device, allow_unexpected=True)
        self.backbone = network.model
        self.v_head = network.v_head.summary.float()
        return self

    def split(self, text: str) -> list[str]:
        """The reference's pieces, unstripped, blank ones included: they stay in the input unread."""
        pieces = text.split(normalize_newlines(self.cfg.step_separator or self.separator))
        if not any(piece.strip() for piece in pieces):
            raise RowError(records.INVALID_ROW, "no steps to score: the completion has only separators")
        return pieces

    def prepare(self, sample: Sample, steps: list[str]) -> tuple[str, list[str]]:
        return self.tokenizer.bos_token + self.question(sample)[1] + "\n", steps

    def encode_prepared(self, prepared: list[tuple[str, list[str]]]) -> list[Encoded]:
        texts = [t for prompt, pieces in prepared for t in (prompt, *[p for p in pieces if p])]
        tokens = iter(self.tokenizer(texts, add_special_tokens=True)["input_ids"])  # reference: encode() each
        out = []
        for _, pieces in prepared:
            ids, positions = list(next(tokens)), []
            for piece in pieces:
                ids += (next(tokens) if piece else []) + [self.step_id]
                if piece.strip():
                    positions.append(len(ids) - 1)
            out.append(Encoded(ids, positions, expected_positions=sum(1 for p in pieces if p.strip())))
        return out

    def read_rendered(self, text: str):
        raise RowError(records.INVALID_ROW, "skywork-prm cannot read a rendered text: its format (bos + problem + "
                       "newline + one step per line) marks no end of a problem that spans lines, and its reference "
                       "tokenizes each step alone; send the question and steps (prompt + steps, or messages)")

    def step_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        values = self.v_head(hidden.to(self.v_head.weight.device, torch.float32))  # (N, 1)
        return values.squeeze(-1).sigmoid()  # (N,)

    def metadata(self) -> dict:
        return {**super().metadata(), "read_token": self.read_token, "step_token_id": self.step_id}
