"""Outcome reward models that are stock `*ForSequenceClassification` decoders.

Skywork-Reward (v0.2, V2), GRM-*-rewardmodel-ft, FsfairX, and any checkpoint saved with
AutoModelForSequenceClassification. The reward is the head's output at the last real token.

We read that position from the true length, never from `config.pad_token_id`: when pad == eos /
eot (common for Llama-3 checkpoints) transformers' own pooling skips the trailing end-of-turn token
and reads one position early, and batched scores then depend on padding.
"""

from __future__ import annotations

import pyarrow as pa
import torch

from rmscore.errors import ModelError, RowError
from rmscore.models import chat, loading
from rmscore.models.base import RewardModel
from rmscore.score.records import Encoded, Sample

ENCODER_TYPES = ("bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "xlm-roberta", "modernbert")


class SeqClsModel(RewardModel):
    name = "seq-cls"
    summary = "AutoModelForSequenceClassification decoders (Skywork-Reward, GRM, FsfairX, ...)"
    reads = "the last token of the chat-templated conversation"
    outputs = "score (raw logit); scores (vector) when num_labels > 1"
    examples = "Skywork/Skywork-Reward-V2-Llama-3.1-8B, Ray2333/GRM-Llama3.2-3B-rewardmodel-ft"

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        archs = hf_config.get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in archs) and (
            hf_config.get("model_type") not in ENCODER_TYPES
        )

    @classmethod
    def load(cls, cfg, hf_config):
        from transformers import AutoModelForSequenceClassification

        device = loading.resolve_device(cfg.device)
        dtype = loading.resolve_dtype(cfg.dtype, device)
        loading.check_weights_policy(cfg)
        tokenizer = loading.load_tokenizer(cfg)
        chat.require_template(tokenizer, cfg)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.path, **loading.pretrained_kwargs(cfg, device, dtype)
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {cfg.path} as a sequence classifier: {str(exc).splitlines()[0]}") from exc
        return cls.from_parts(cfg, model, tokenizer, hf_config, loading.place(model, cfg, device))

    @classmethod
    def from_parts(cls, cfg, model, tokenizer, hf_config: dict, device) -> "SeqClsModel":
        """Wrap a model already in memory (e.g. random-init weights in the benchmark)."""
        self = cls(cfg)
        self.device, self.tokenizer = device, tokenizer
        self.template = chat.require_template(tokenizer, cfg)
        self.backbone = getattr(model, model.base_model_prefix)
        # The head is tiny: keep an fp32 copy so scores do not carry bf16 rounding of the head.
        self.score_head = model.score.float()
        self.num_labels = model.config.num_labels
        self.labels = [model.config.id2label.get(i, str(i)) for i in range(self.num_labels)]
        self.pad_id = _pad_id(model.config, tokenizer)
        self.max_length = loading.model_max_length(hf_config, tokenizer)
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        conversations = [chat.conversation(s.prompt, s.completion, self.cfg.system_prompt) for s in samples]
        return self._read(chat.render(self.tokenizer, conversations))

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        return self._read([self.rendered_text(t) for t in texts])

    def _read(self, texts: list[str]) -> list[Encoded]:
        return [Encoded(ids, [len(ids) - 1]) for ids in chat.tokenize(self.tokenizer, texts, self.cfg.bos)]

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        hidden = hidden.to(self.score_head.weight.device, torch.float32)  # (B, H): one position per row
        logits = self.score_head(hidden)  # (B, num_labels)
        return {"score": logits[:, 0]} if self.num_labels == 1 else {"score": logits[:, 0], "scores": logits}

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("scores", pa.list_(pa.float64()))] if self.num_labels > 1 else []

    def metadata(self) -> dict:
        return {
            "template_hash": loading.template_hash(self.template),
            "bos": self.cfg.bos or "template",
            "labels": self.labels,
            "date_string": chat.PINNED_DATE,
        }


def _pad_id(config, tokenizer) -> int:
    # Any id works for right padding without a mask (causal rows never see later tokens); prefer
    # the checkpoint's own so inputs look like its training batches.
    for candidate in (config.pad_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(candidate, int):
            return candidate
    return 0
