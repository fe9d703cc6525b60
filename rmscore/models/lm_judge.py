"""Any causal LM as a judge: P(Yes) / (P(Yes) + P(No)) at the answer position.

The LLM-as-a-judge score of generative verifiers and pointwise judges, read in one forward pass
instead of generate() with logprobs: the (prompt, completion) is rendered into a question by a
Jinja template (--judge-template), which becomes the one user turn of the checkpoint's own chat
template with the generation prompt; the hidden state at the last token (where the answer's first
token is predicted) goes through the two LM-head rows of the score tokens (--score-tokens "Yes No").
  score       = P(pos) / (P(pos) + P(neg)) = softmax over the two logits -> [0]
  score_logit = logit(pos) - logit(neg)
The template puts the question before the answer, so every completion of one prompt shares the
tokens up to the answer: prompt reuse computes them once.

Only the two rows of the LM head are kept (as step-tag does); the architectures that transform
their logits (Gemma's soft-capping, Cohere's and Granite's scales) get the same transform, and a
probe checked against the full model at load time catches any other.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch

from rmscore.errors import ConfigError, ModelError, RowError
from rmscore.models import chat, loading
from rmscore.models.base import RewardModel
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

DEFAULT_TEMPLATE = """Here is a question and a candidate answer.

Question:
{{ prompt }}

Candidate answer:
{{ completion }}

Is the candidate answer correct and helpful? Answer Yes or No."""
DEFAULT_SCORE_TOKENS = "Yes No"
TEMPLATE_VARIABLES = ("prompt", "completion", "messages")
PROBE = ("What is 2 + 2?", "4")  # rendered and run through the full LM head once at load time
# Full-head logits vs our two fp32 rows, by the model's dtype (half precision rounds the head).
CHECK_TOLERANCE = {torch.float32: (1e-4, 1e-3)}
HALF_TOLERANCE = (2e-2, 5e-2)


def compile_template(value: str | None):
    """The judge template (a file, or Jinja text), sandboxed as transformers renders chat templates."""
    from jinja2 import StrictUndefined, TemplateSyntaxError, meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    text = DEFAULT_TEMPLATE if value is None else Path(value).read_text() if Path(value).is_file() else value
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    try:
        used = meta.find_undeclared_variables(env.parse(text))
    except TemplateSyntaxError as exc:
        raise ConfigError(f"--judge-template is not valid Jinja: {exc.message} (line {exc.lineno})") from exc
    unknown = sorted(used - set(TEMPLATE_VARIABLES))
    if unknown or "completion" not in used:
        what = f"uses unknown variables {unknown}" if unknown else "never uses {{ completion }}"
        raise ConfigError(f"--judge-template {what}" + ("" if Path(value).is_file() else f" (and {value!r} is "
                          "not a file)"), f"a judge template can use {', '.join(TEMPLATE_VARIABLES)}")
    return text, env.from_string(text)


def prompt_text(messages: list[dict]) -> str:
    """The prompt as the template's `prompt`: a single user turn as it is, else a transcript."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def score_token_ids(tokenizer, words: list[str]) -> list[int]:
    ids = []
    for word in words:
        got = tokenizer.encode(word, add_special_tokens=False)
        if len(got) != 1:
            raise ModelError(f"score token {word!r} is {len(got)} tokens for this tokenizer: "
                             f"{tokenizer.convert_ids_to_tokens(got)}",
                             "choose words that are one token each (no leading space) with --score-tokens")
        ids += got
    if ids[0] == ids[1]:
        raise ModelError(f"score tokens {words} are the same token", "choose two different words")
    return ids


def logit_transform(config):
    """What the checkpoint's *ForCausalLM does to its logits after lm_head, as (scale, soft cap)."""
    scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere multiplies
    scale /= float(getattr(config, "logits_scaling", None) or 1.0)  # Granite divides
    return scale, getattr(config, "final_logit_softcapping", None)  # Gemma 2/3: cap * tanh(x / cap)


class LmJudge(RewardModel):
    name = "lm-judge"
    summary = "any causal LM asked a yes/no question about each answer (LLM-as-a-judge, generative verifiers)"
    reads = ("the last token of the chat-templated judge question (--judge-template, one user turn, "
             "with the generation prompt)")
    outputs = "score = P(Yes) / (P(Yes) + P(No)) (--score-tokens), score_logit = logit(Yes) - logit(No)"
    examples = "HuggingFaceTB/SmolLM2-135M-Instruct, Qwen/Qwen2.5-7B-Instruct (any instruction *ForCausalLM)"
    loads_gguf = True

    @classmethod
    def load(cls, cfg, hf_config):
        archs = hf_config.get("architectures") or []  # a GGUF file's config lists none
        if archs and not any(a.endswith("ForCausalLM") for a in archs):
            raise ModelError(f"{cfg.path} is not a causal LM ({', '.join(archs)}): lm-judge needs a *ForCausalLM",
                             "see `rmscore models` for the family of this checkpoint")
        self = cls.begin(cfg)
        self.template_text, self.judge = compile_template(cfg.judge_template)
        self.chat_template = chat.require_template(self.tokenizer, cfg)
        self.words = (cfg.score_tokens or DEFAULT_SCORE_TOKENS).split()
        self.score_ids = score_token_ids(self.tokenizer, self.words)
        self.bos = cfg.bos or "template"
        self.max_length = loading.model_max_length(hf_config, self.tokenizer)
        model = self._load_lm(cfg)
        self.pad_id = loading.pad_id(model.config, self.tokenizer)
        self.scale, self.cap = logit_transform(model.config)
        self.label_head = loading.label_rows(model, self.score_ids)
        self._check_against_full_head(model)
        return self

    def _load_lm(self, cfg):
        """The causal LM, strictly: a missing weight (an LM head absent from the checkpoint) would
        otherwise be initialised at random and give plausible wrong scores."""
        from transformers import AutoModelForCausalLM

        kwargs = loading.pretrained_kwargs(cfg, self.device, self.dtype)
        try:
            model, info = AutoModelForCausalLM.from_pretrained(cfg.path, output_loading_info=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {cfg.path} as a causal LM: {str(exc).splitlines()[0]}") from exc
        if info["missing_keys"]:
            raise ModelError(f"{cfg.path} lacks weights a causal LM needs (first: {sorted(info['missing_keys'])[0]})",
                             "lm-judge needs a checkpoint with its LM head, saved from a *ForCausalLM")
        self.device = loading.place(model, cfg, self.device)
        self.backbone = getattr(model, model.base_model_prefix)
        return model

    def _check_against_full_head(self, model) -> None:
        """Score the probe with the full LM head once: any logit transform we do not reproduce
        shows here, before a run writes numbers that differ from the model's own."""
        enc = self.encode([Sample(0, 0, None, [{"role": "user", "content": PROBE[0]}], True, PROBE[1])])[0]
        ids = torch.tensor([enc.ids], device=self.device)  # (1, T)
        with torch.inference_mode():
            full = model(input_ids=ids, use_cache=False).logits[0, -1, self.score_ids].float()  # (2,)
            hidden = self.backbone(input_ids=ids, use_cache=False).last_hidden_state[0, -1:]  # (1, H)
            ours = self.logits(hidden)[0]  # (2,)
        rtol, atol = CHECK_TOLERANCE.get(model.dtype, HALF_TOLERANCE)
        if not torch.allclose(ours.to(full.device), full, rtol=rtol, atol=atol):
            raise ModelError(f"{type(model).__name__} transforms its logits in a way lm-judge does not reproduce "
                             f"(probe logits {full.tolist()} vs {ours.tolist()})", "please report it")

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.label_head(hidden.to(self.label_head.weight.device, torch.float32)) * self.scale  # (N, 2)
        return logits if self.cap is None else torch.tanh(logits / self.cap) * self.cap

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        rendered = [self._question(s) for s in samples]
        ids = iter(chat.tokenize(self.tokenizer, self._chat([r for r in rendered if isinstance(r, str)]), self.bos))
        out: list[Encoded | RowError] = []
        for question in rendered:
            row = question if isinstance(question, RowError) else next(ids)
            out.append(row if isinstance(row, RowError) else Encoded(row, [len(row) - 1]))  # the answer's slot
        return out

    def _chat(self, questions: list[str]) -> list[str]:
        """Each question as the one user turn (after --system-prompt, if given), then the
        generation prompt: the model's next token would be its answer."""
        if not questions:
            return []
        conversations = [[*chat.with_system([], self.cfg.system_prompt), {"role": "user", "content": q}]
                         for q in questions]
        return self.tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True,
                                                  date_string=chat.PINNED_DATE)

    def _question(self, sample: Sample) -> str | RowError:
        try:
            return self.judge.render(prompt=prompt_text(sample.prompt), completion=sample.completion,
                                     messages=sample.prompt)
        except Exception as exc:  # a template error on one row's data: that row is not scored
            return RowError(records.INVALID_ROW, f"judge template failed: {str(exc).splitlines()[0]}")

    def head(self, hidden: torch.Tensor, batch: list[Encoded]) -> list[dict]:
        logits = self.logits(hidden)  # (B, 2): [pos, neg]
        probs = logits.softmax(-1)[:, 0].tolist()  # (B,) P(pos) / (P(pos) + P(neg))
        margins = (logits[:, 0] - logits[:, 1]).tolist()  # (B,)
        return [{"score": p, "score_logit": m} for p, m in zip(probs, margins)]

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("score_logit", pa.float64())]

    def metadata(self) -> dict:
        return {"template_hash": loading.template_hash(self.chat_template), "bos": self.bos,
                "judge_template_hash": loading.template_hash(self.template_text),
                "judge_template_default": self.cfg.judge_template is None,
                "score_tokens": self.words, "score_token_ids": self.score_ids, "date_string": chat.PINNED_DATE}
