"""Qwen2.5-Math-PRM: a Qwen2 backbone and a two-class MLP head read at every <extra_0>.

Qwen/Qwen2.5-Math-PRM-7B and -72B ship remote code (Qwen2ForProcessRewardModel in
modeling_qwen2_rm.py). We run none of it: QwenPrmNetwork has the same modules, `model` (Qwen2Model)
and `score` = Sequential(Linear(h, h), ReLU, Linear(h, 2)), so the weights load by their published
names (model.*, score.0.*, score.2.*). As the card: system "Please reason step by step...",
user = query, assistant = "<extra_0>".join(steps) + "<extra_0>", rendered with tokenize=False and
then encoded (Qwen adds no BOS); softmax over the two classes at each <extra_0> -> [:, 1].
The card's make_step_rewards drops probabilities equal to 0 (`sample[sample != 0]`), which
misaligns steps if one underflows; we gather by position instead.
A completion is already tagged when it holds <extra_0>: by the card's format, each step then ends
with the tag, so it must end with one (text after the last tag would go unscored: flagged).
The card's system turn is a default: a system turn from the data or --system-prompt replaces it.
A conversation already rendered as text (serve) is the card's conversation_str: mended at its ends
as every chat family's (chat.RenderedText), then read at every <extra_0>, each inside the last
assistant reply, nothing but the end of the turn after the last one.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel

from rmscore.errors import ModelError, RowError
from rmscore.models import chat, loading
from rmscore.models.native import from_checkpoint
from rmscore.models.steps import ProcessRewardModel, tag_positions
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
ARCHITECTURE = "Qwen2ForProcessRewardModel"


class QwenPrmNetwork(Qwen2PreTrainedModel):
    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        hidden = config.hidden_size
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.post_init()


class QwenPrmModel(ProcessRewardModel):
    name = "qwen-prm"
    summary = "Qwen2.5-Math-PRM: Qwen2 + two-class MLP head, native (no remote code)"
    reads = ("every <extra_0> after a step in the ChatML conversation (system, question, steps); steps: the "
             "steps column; a completion holding <extra_0> (it must end with one); else split on blank lines")
    outputs = "step_scores = softmax(head) -> positive class; score_min/prod/mean/last"
    examples = "Qwen/Qwen2.5-Math-PRM-7B, Qwen/Qwen2.5-Math-PRM-72B"
    separator = "\n\n"  # the card's recommendation for Qwen2.5-Math-Instruct responses
    tag = "<extra_0>"
    system_turn = True  # the card's input has one
    rendered_format = ("the ChatML conversation (system, question, reply) rendered with its chat template, the reply "
                       "being the steps each ended by <extra_0>")

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        auto_model = (hf_config.get("auto_map") or {}).get("AutoModel", "")
        return ARCHITECTURE in (hf_config.get("architectures") or []) or auto_model.endswith(f".{ARCHITECTURE}")

    @classmethod
    def load(cls, cfg, hf_config):
        self = cls.start(cfg, hf_config)
        self.template = chat.require_template(self.tokenizer, cfg)
        ids = self.tokenizer.encode(self.tag, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelError(f"{self.tag} is not one token for the tokenizer of {cfg.path}",
                             "a Qwen2.5-Math-PRM tokenizer has it as a special token")
        self.tag_id = ids[0]  # card: tokenizer.encode("<extra_0>")[0]
        network, self.device = from_checkpoint(QwenPrmNetwork, cfg, None, self.device, allow_unexpected=True)
        self.backbone = network.model
        self.score_head = network.score.float()  # tiny: fp32 keeps bf16 rounding out of the head
        return self

    def tagged_steps(self, text: str) -> list[str] | None:
        if self.tag not in text:
            return None
        *steps, tail = text.split(self.tag)
        if tail.strip():
            raise RowError(records.INVALID_ROW, f"the completion holds {self.tag} but does not end with it: the text "
                           f"after the last one would not be scored; end every step with {self.tag}, as the card does")
        return [step.strip() for step in steps]

    def prepare(self, sample: Sample, steps: list[str]) -> list[dict]:
        system, query = self.question(sample)
        return [{"role": "system", "content": self.untag(SYSTEM if system is None else system)},
                {"role": "user", "content": self.untag(query)},
                {"role": "assistant", "content": self.tag.join(steps) + self.tag}]

    def encode_prepared(self, prepared: list[list[dict]]) -> list[Encoded]:
        texts = chat.render(self.tokenizer, prepared)
        return self.encode_read(list(zip(texts, [m[-1]["content"].count(self.tag) for m in prepared])))  # = steps

    def read_rendered(self, text: str) -> tuple[str, int]:
        """The card's conversation_str as a policy rendered it: read at every <extra_0>, all in the
        last assistant reply, which must end with one."""
        text = self.rendered_text(text)
        opener = self.reply_opener
        start = text.rfind(opener) if opener else 0
        if start < 0 and self.tag in text:
            raise RowError(records.INVALID_ROW, f"no assistant reply ({opener!r}) in the text: {self.name} reads "
                                                f"{self.rendered_format}")
        return text, self.tagged_text(text, start + len(opener))

    def encode_read(self, read: list[tuple[str, int]]) -> list[Encoded]:
        texts, steps = zip(*read)
        ids = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]  # card: tokenizer.encode(text)
        return tag_positions(ids, list(steps), self.tag_id)

    def step_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.score_head(hidden.to(self.score_head[0].weight.device, torch.float32))  # (N, 2)
        return logits.softmax(-1)[:, 1]  # (N,) positive class

    def metadata(self) -> dict:
        return {**super().metadata(), "template_hash": loading.template_hash(self.template),
                "system_prompt_default": SYSTEM}
