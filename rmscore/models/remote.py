"""The escape hatch: a reward model that only its own remote code knows how to run.

Used with --model-type remote, or by auto-detection when config.json has an auto_map no native
family claims and --trust-remote-code is given. The checkpoint's model is loaded with
trust_remote_code and its `.score` / `.rewards` / `.logits` are read from the output.

It still goes through the one scoring loop and the shared forward: RowOutputs wraps the whole
model as a "backbone" whose hidden state at every position is that row's output vector, so the
forward's gather at the last token hands the head exactly the row's outputs. The remote code
gets right-padded rows and an attention mask from true lengths; how it finds each row's end is
its own business, so check batched == batch size 1 with `rmscore doctor` before a big run.
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from rmscore.errors import ModelError, RowError
from rmscore.models import chat, loading
from rmscore.models.base import RewardModel
from rmscore.score.records import Encoded, Sample

FIELDS = ("score", "rewards", "logits")  # read from the model output, in this order


class RowOutputs(nn.Module):
    """A whole model presented as a backbone: (B, T) ids -> (B, T, K) = its K outputs per row,
    repeated along T. `layout` lists (field, width) of the K columns, fixed by the first call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.layout: list[tuple[str, int]] | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        batch = input_ids.shape[0]
        found = [(name, _get(out, name)) for name in FIELDS]
        found = [(name, v.float().reshape(batch, -1)) for name, v in found if isinstance(v, torch.Tensor)]
        if not found:
            raise ModelError(f"the remote model returned {type(out).__name__} without .score, .rewards or .logits",
                             "rmscore reads only those fields; wrap the model or use a native --model-type")
        layout = [(name, v.shape[1]) for name, v in found]
        if self.layout is None:
            self.layout = layout
        elif layout != self.layout:
            raise ModelError(f"the remote model's outputs changed shape between batches ({self.layout} -> {layout})")
        columns = torch.cat([v for _, v in found], dim=1)  # (B, K)
        return BaseModelOutput(last_hidden_state=columns[:, None, :].expand(-1, input_ids.shape[1], -1))


def _get(out, name: str):
    return out.get(name) if isinstance(out, dict) else getattr(out, name, None)


class RemoteModel(RewardModel):
    name = "remote"
    summary = "any custom model, run with its own code (--trust-remote-code); reads .score/.rewards/.logits"
    reads = "the model's own pooling, on right-padded rows with an attention mask"
    outputs = "score (.score, else .logits[0]); rewards / logits vectors when the model returns them"
    runs_remote_code = True
    is_causal = False  # remote code may look for each row's end in the attention mask
    backbone_kwargs = {}

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        return bool(hf_config.get("auto_map"))

    @classmethod
    def load(cls, cfg, hf_config):
        if not cfg.trust_remote_code:
            raise ModelError("--model-type remote runs the checkpoint's own Python code", "add --trust-remote-code")
        self = cls.begin(cfg)
        dtype = self.dtype
        self.template = chat.require_template(self.tokenizer, cfg)
        auto = _auto_class(hf_config)
        try:
            model = auto.from_pretrained(cfg.path, **loading.pretrained_kwargs(cfg, self.device, dtype))
        except Exception as exc:  # remote code can fail in any way; say where
            raise ModelError(f"cannot load {cfg.path} with its remote code ({auto.__name__}): "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        self.device = loading.place(model, cfg, self.device)
        self.backbone = RowOutputs(model)
        self.auto_class = auto.__name__
        self.bos = cfg.bos or "template"
        self.pad_id = loading.pad_id(model.config, self.tokenizer)
        self.max_length = loading.model_max_length(hf_config, self.tokenizer)
        self._probe()
        return self

    def _probe(self) -> None:
        """One tiny forward, so the output columns (and the Parquet schema) are known up front."""
        from rmscore.score.forward import PaddedForward

        sample = Sample(0, 0, None, [{"role": "user", "content": "Hi"}], True, "Hello!")
        PaddedForward(self).score(self.encode([sample]))

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        conversations = [chat.conversation(s.prompt, s.completion, self.cfg.system_prompt) for s in samples]
        return self._read(chat.render(self.tokenizer, conversations))

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        return self._read([self.rendered_text(t) for t in texts])

    def _read(self, texts: list[str]) -> list[Encoded]:
        return [Encoded(ids, [len(ids) - 1]) for ids in chat.tokenize(self.tokenizer, texts, self.bos)]

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        parts = dict(zip([n for n, _ in self.backbone.layout],
                         hidden.float().split([w for _, w in self.backbone.layout], dim=1)))
        score = parts["score"][:, 0] if "score" in parts else parts["logits"][:, 0]  # (B,)
        return {"score": score, **{name: parts[name] for name in self._vectors()}}

    def _vectors(self) -> list[str]:
        # rewards always (named outputs); logits only when they are more than the score itself
        return [n for n, w in self.backbone.layout if n == "rewards" or (n == "logits" and w > 1)]

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(name, pa.list_(pa.float64())) for name in self._vectors()]

    def metadata(self) -> dict:
        return {"remote_code": True, "auto_class": self.auto_class, "outputs_read": self.backbone.layout,
                "template_hash": loading.template_hash(self.template), "bos": self.bos}


def _auto_class(hf_config: dict):
    import transformers

    auto_map = hf_config.get("auto_map") or {}
    for name in ("AutoModelForSequenceClassification", "AutoModel"):
        if name in auto_map:
            return getattr(transformers, name)
    return transformers.AutoModelForSequenceClassification
