"""NVIDIA Llama-3.1-Nemotron-70B-Reward-HF: a causal LM whose reward is one next-token logit.

The card calls generate(max_new_tokens=1, output_scores=True) on the chat-templated conversation
(tokenize=True, no generation prompt) and takes scores[0][0][0]: the logit of vocabulary id 0 at
the last position. We run the backbone, gather that one hidden state and dot it with row 0 of
lm_head, so the T x V logits are never materialised (and lm_head itself is freed).
"""

from __future__ import annotations

import torch

from rmscore.errors import ModelError, RowError
from rmscore.models import PATH_KEY, chat, loading
from rmscore.models.base import RewardModel
from rmscore.score.records import Encoded, Sample

CARD_MAX_LENGTH = 4096  # the card's limit; --max-length overrides it


class Nemotron(RewardModel):
    name = "nemotron"
    summary = "causal LMs whose reward is the logit of one vocabulary id at the last token (Nemotron-70B-Reward)"
    reads = "the last token of the chat-templated conversation (no generation prompt)"
    outputs = "score (logit of vocabulary id 0)"
    examples = "nvidia/Llama-3.1-Nemotron-70B-Reward-HF"
    known_names = ("llama-3.1-nemotron-70b-reward",)
    reward_token_id = 0  # the vocabulary row the card reads

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        name = str(hf_config.get(PATH_KEY, "")).lower()
        causal = any(a.endswith("ForCausalLM") for a in hf_config.get("architectures") or [])
        return causal and any(known in name for known in cls.known_names)

    @classmethod
    def load(cls, cfg, hf_config):
        from transformers import AutoModelForCausalLM

        self = cls.begin(cfg)
        dtype = self.dtype
        self.template = chat.require_template(self.tokenizer, cfg)
        try:
            model = AutoModelForCausalLM.from_pretrained(cfg.path, **loading.pretrained_kwargs(cfg, self.device, dtype))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {cfg.path} as a causal LM: {str(exc).splitlines()[0]}") from exc
        self.device = loading.place(model, cfg, self.device)
        self.backbone = getattr(model, model.base_model_prefix)
        lm_head = model.get_output_embeddings()
        self.row = lm_head.weight[self.reward_token_id].detach().float().clone()  # (H,)
        bias = getattr(lm_head, "bias", None)
        self.bias = float(bias[self.reward_token_id]) if bias is not None else 0.0
        self.bos = cfg.bos or "template"  # the card: apply_chat_template(tokenize=True), one BOS
        self.pad_id = loading.pad_id(model.config, self.tokenizer)
        self.max_length = min(CARD_MAX_LENGTH, loading.model_max_length(hf_config, self.tokenizer))
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        conversations = [chat.conversation(s.prompt, s.completion, self.cfg.system_prompt) for s in samples]
        return self._read(chat.render(self.tokenizer, conversations))

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        return self._read([self.rendered_text(t) for t in texts])

    def _read(self, texts: list[str]) -> list[Encoded]:
        return [Encoded(ids, [len(ids) - 1]) for ids in chat.tokenize(self.tokenizer, texts, self.bos)]

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        logits = hidden.to(self.row.device, torch.float32) @ self.row + self.bias  # (B,)
        return {"score": logits}

    def metadata(self) -> dict:
        return {"template_hash": loading.template_hash(self.template), "bos": self.bos,
                "reward_token_id": self.reward_token_id, "date_string": chat.PINNED_DATE}
