"""ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1): 19 objective rewards mixed by a prompt-conditioned gate.

The published remote code (`LlamaForRewardModelWithGating`) no longer imports under
transformers 5, so the modules are declared here under the checkpoint's parameter names:
  model                     LlamaModel
  regression_layer          Linear(h, 19, bias=False)      -> rewards, read at the last token
  gating.layers.{0..3}      Linear(h,1024) ReLU ... Linear(1024,19), softmax(x / T) * logit_scale,
  gating.logit_scale        read at the <|eot_id|> that closes the prompt (last user turn)
  reward_transform_matrix   19 x 19
score = sum(gating_output * (rewards @ reward_transform_matrix)).
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel

from rmscore.errors import RowError
from rmscore.models import chat, loading, native
from rmscore.models.base import RewardModel
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

# Head order, from the model card; config.json carries no label names.
OBJECTIVES = (
    "helpsteer-helpfulness", "helpsteer-correctness", "helpsteer-coherence", "helpsteer-complexity",
    "helpsteer-verbosity", "ultrafeedback-overall_score", "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness", "ultrafeedback-honesty", "ultrafeedback-helpfulness", "beavertails-is_safe",
    "prometheus-score", "argilla-overall_quality", "argilla-judge_lm", "code-complexity", "code-style",
    "code-explanation", "code-instruction-following", "code-readability",
)


class Gating(nn.Module):
    def __init__(self, hidden: int, outputs: int, temperature: float, width: int, depth: int):
        super().__init__()
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1))
        sizes = [hidden] + [width] * depth
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])] + [nn.Linear(sizes[-1], outputs)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, h) -> (B, n)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.softmax(self.layers[-1](x) / self.temperature, dim=-1) * self.logit_scale[0]


class ArmoRMWeights(LlamaPreTrainedModel):
    """Parameter names as in the checkpoint; forward is never called (see ArmoRM.head)."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        n = getattr(config, "num_objectives", 19)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, n, bias=False)
        self.reward_transform_matrix = nn.Parameter(torch.eye(n), requires_grad=False)
        self.gating = Gating(config.hidden_size, n, getattr(config, "gating_temperature", 10),
                             getattr(config, "gating_hidden_dim", 1024), getattr(config, "gating_n_hidden", 3))
        self.post_init()


class ArmoRM(RewardModel):
    name = "armorm"
    summary = "ArmoRM: Llama-3 backbone, 19 objective rewards mixed by a gating network (native, no remote code)"
    reads = "the <|eot_id|> closing the prompt (gate) and the last token (rewards)"
    outputs = "score; rewards (19, names in the metadata); gating_output (19)"
    examples = "RLHFlow/ArmoRM-Llama3-8B-v0.1"
    # <|eot_id|> of the last user turn + the assistant header: the reference's "prompt embedding".
    gate_text = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        return "LlamaForRewardModelWithGating" in (hf_config.get("architectures") or [])

    @classmethod
    def load(cls, cfg, hf_config):
        self = cls.begin(cfg)
        self.template = chat.require_template(self.tokenizer, cfg)
        config = LlamaConfig.from_pretrained(cfg.path, revision=cfg.revision)
        model, self.device = native.from_checkpoint(ArmoRMWeights, cfg, config, self.device)
        self.backbone = model.model
        # The heads are tiny: fp32 copies keep bf16 rounding out of the mix.
        self.rewards_head = model.regression_layer.float()
        self.gating = model.gating.float()
        self.transform = model.reward_transform_matrix.detach().float()  # (n, n)
        n = self.transform.shape[0]
        self.objectives = list(OBJECTIVES) if n == len(OBJECTIVES) else [f"objective_{i}" for i in range(n)]
        self.gate_ids = self.tokenizer.encode(self.gate_text, add_special_tokens=False)
        self.bos = cfg.bos or "template"  # the card: apply_chat_template(tokenize=True), one BOS
        self.pad_id = loading.pad_id(config, self.tokenizer)
        self.max_length = loading.model_max_length(hf_config, self.tokenizer)
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        conversations = [chat.conversation(s.prompt, s.completion, self.cfg.system_prompt) for s in samples]
        return self._read(chat.render(self.tokenizer, conversations))

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        return self._read([self.rendered_text(t) for t in texts])

    def _read(self, texts: list[str]) -> list[Encoded | RowError]:
        return [self._positions(ids) for ids in chat.tokenize(self.tokenizer, texts, self.bos)]

    def _positions(self, ids: list[int]) -> Encoded | RowError:
        width = len(self.gate_ids)
        for start in range(len(ids) - width, -1, -1):  # the last occurrence: the final prompt turn
            if ids[start:start + width] == self.gate_ids:
                return Encoded(ids, [start, len(ids) - 1])
        return RowError(records.INVALID_ROW, "no '<|eot_id|><|start_header_id|>assistant' before the reply, "
                                             "which the gate reads (ArmoRM needs its Llama-3 chat template)")

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        hidden = hidden.to(self.transform.device, torch.float32).view(len(batch), 2, -1)  # (B, gate|last, H)
        gate = self.gating(hidden[:, 0])  # (B, n)
        rewards = self.rewards_head(hidden[:, 1])  # (B, n)
        score = (gate * (rewards @ self.transform)).sum(dim=-1)  # (B,)
        return {"score": score, "rewards": rewards, "gating_output": gate}

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("rewards", pa.list_(pa.float64())), pa.field("gating_output", pa.list_(pa.float64()))]

    def metadata(self) -> dict:
        return {"objectives": self.objectives, "template_hash": loading.template_hash(self.template),
                "bos": self.bos, "date_string": chat.PINNED_DATE}
