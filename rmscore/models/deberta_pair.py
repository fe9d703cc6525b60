"""Encoder reward models that score a (question, answer) text pair: OpenAssistant's DeBERTa-v3
reward models, and any BERT / RoBERTa / DeBERTa / ELECTRA `*ForSequenceClassification`.

The card: tokenizer(question, answer) -> [CLS] question [SEP] answer [SEP], no chat template,
model(**inputs).logits[0]. We read position 0 ([CLS]) and apply the model's own pooler and
classifier to it, so padding never reaches the head; the shared forward gives encoders an
attention mask built from true lengths.

The question is the last user turn of the prompt: these models were trained on single
(question, answer) pairs, and the answer responds to that turn. Earlier turns and system turns
of the data are not seen by the model (the output metadata says so); --system-prompt, which
could only be dropped, is refused.
"""

from __future__ import annotations

import copy

import pyarrow as pa
import torch
from torch import nn

from rmscore.errors import ConfigError, ModelError, RowError
from rmscore.models import loading
from rmscore.models.base import RewardModel
from rmscore.score.records import Encoded, Sample

# Heads that pool [CLS] (DeBERTa ContextPooler, BERT pooler) or read it themselves (RoBERTa, ELECTRA).
ENCODERS = ("deberta-v2", "deberta", "bert", "roberta", "xlm-roberta", "electra")


class DebertaPair(RewardModel):
    name = "deberta-pair"
    summary = "encoder classifiers on a (question, answer) text pair, no chat template (OpenAssistant DeBERTa RMs)"
    reads = "[CLS] (position 0) of [CLS] question [SEP] answer [SEP]; question = the last user turn"
    outputs = "score (raw logit); scores (vector) when num_labels > 1"
    examples = "OpenAssistant/reward-model-deberta-v3-large-v2"
    prompts = "any: the question is the last user turn; earlier and system turns are not seen (no --system-prompt)"
    is_causal = False
    backbone_kwargs = {}

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        archs = hf_config.get("architectures") or []
        return hf_config.get("model_type") in ENCODERS and any(a.endswith("ForSequenceClassification") for a in archs)

    @classmethod
    def load(cls, cfg, hf_config):
        from transformers import AutoModelForSequenceClassification

        if cfg.system_prompt is not None:
            raise ConfigError("deberta-pair takes no system prompt: the card's input is (question, answer) text",
                              "drop --system-prompt")
        if hf_config.get("model_type") not in ENCODERS:
            raise ModelError(f"{cfg.path} is a {hf_config.get('model_type')!r} model; deberta-pair knows "
                             f"{', '.join(ENCODERS)}", "see `rmscore models`")
        self = cls.begin(cfg)
        dtype = self.dtype
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.path, **loading.pretrained_kwargs(cfg, self.device, dtype))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {cfg.path} as an encoder classifier: {str(exc).splitlines()[0]}") from exc
        self.device = loading.place(model, cfg, self.device)
        self.backbone = getattr(model, model.base_model_prefix)
        self.cls_head = _cls_head(model, self.backbone).float()
        self.num_labels = model.config.num_labels
        self.pad_id = loading.pad_id(model.config, self.tokenizer)
        self.max_length = loading.model_max_length(hf_config, self.tokenizer)
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        if not samples:
            return []
        # As the card's tokenizer(q, a): an empty answer is no second text, so tokenizer(q, "") is
        # [CLS] q [SEP]; a batched (q, "") pair would add a second [SEP].
        inputs = [(_question(s.prompt), s.completion) if s.completion else _question(s.prompt) for s in samples]
        enc = self.tokenizer(inputs)
        types = enc.get("token_type_ids") or [None] * len(samples)
        return [Encoded(ids, [0], token_type_ids=t) for ids, t in zip(enc["input_ids"], types)]

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        hidden = hidden.to(next(self.cls_head.parameters()).device, torch.float32)
        logits = self.cls_head(hidden[:, None, :])  # (B, 1, H) as if a whole sequence -> (B, num_labels)
        return {"score": logits[:, 0]} if self.num_labels == 1 else {"score": logits[:, 0], "scores": logits}

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("scores", pa.list_(pa.float64()))] if self.num_labels > 1 else []

    def metadata(self) -> dict:
        return {"input": "text pair (question, answer)", "question": "last user turn of the prompt"}


def _cls_head(model, backbone) -> nn.Module:
    pooler = getattr(model, "pooler", None) or getattr(backbone, "pooler", None)
    head = model.classifier if pooler is None else nn.Sequential(pooler, model.classifier)
    # A copy: BERT's pooler also runs inside the backbone, which must keep its own dtype.
    return copy.deepcopy(head)


def _question(prompt: list[dict]) -> str:
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]
