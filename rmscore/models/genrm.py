"""Generative judges (GenRM): a model writes a critique, then a verdict, and the verdict is the score.

Two back ends behind one adapter: with --judge-url the judge is any OpenAI-compatible server
(judge_http.py); without, -m MODEL generates here with transformers (judge_local.py). Either way
the rows go through the one scoring loop (rmscore/score/scorer.py): encode() renders the judge's
question, GenerateRunner stands where the forward runners stand, and each output row carries its
score, or status `unparsed` with the reply kept (never a made-up number).

  pointwise  the template shows one completion; the score is the number the pattern captures.
  pairwise   the template shows completions A and B of a two-completion (or chosen/rejected) row.
             Each pair is asked in both orders; a completion's score is the share of the two
             verdicts it wins (0, 0.5 or 1). `judge_consistent` is False when the verdict followed
             the position instead (both orders picked A, or both B).

Each distinct request is sent once: a pair's two rows ask the same two questions, and replies are
kept for the rows still to come (a bounded memo). With --judge-url, `ids` are the question's
characters (there is no tokenizer here): what --max-length and de-duplication count.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict

import pyarrow as pa

from rmscore.errors import ConfigError, ModelError, RowError
from rmscore.models import chat, judge_prompts, loading
from rmscore.models.base import RewardModel
from rmscore.models.judge_prompts import Reply, Unparsed
from rmscore.models.lm_judge import LmJudge, prompt_text
from rmscore.score import records
from rmscore.score.batching import plan_batches
from rmscore.score.forward.base import Cost, Runner
from rmscore.score.records import Encoded, Sample

MEMO = 8192  # replies kept for rows still to come (a pair's second row), by question digest
SERVED_MAX_LENGTH = 1_000_000  # characters of one question to a served judge, unless --max-length says less
MIN_GENERATE_BUDGET = 16_384  # padded prompt + new tokens per in-process generate() call, at least


class GenRM(RewardModel):
    name = "genrm"
    summary = "a judge that writes a critique then a verdict (GenRM), on a server (--judge-url) or in-process (-m)"
    reads = "the verdict at the end of the judge's reply (--verdict-pattern); pairwise: both orders of each pair"
    outputs = ("score = the verdict (pointwise) or the share of both orders won (pairwise); judge_output = the "
               "reply; pairwise also judge_output_swapped, judge_consistent")
    examples = "any instruction model: Qwen/Qwen2.5-7B-Instruct, a served judge via vllm serve (see docs/genrm.md)"
    prompts = "any; pairwise needs rows with two completions (or chosen/rejected)"
    generates = True

    @classmethod
    def reads_checkpoint(cls, cfg) -> bool:
        return cfg.judge_url is None

    @classmethod
    def load(cls, cfg, hf_config):
        from rmscore.models.judge_http import HttpJudge

        # The template and the pattern first: a mistake in either stops the run before any weights load.
        template_text, template = judge_prompts.template(cfg.judge_template, cfg.judge_mode)
        pattern = judge_prompts.pattern(cfg.verdict_pattern, cfg.judge_mode)
        if cfg.judge_url is not None:
            self = cls(cfg)
            self.device, self.backbone, self.tokenizer = loading.resolve_device("cpu"), None, None
            self.max_length, self.pad_id = SERVED_MAX_LENGTH, 0
            self.backend = HttpJudge(cfg, self)
        else:
            self = cls._load_local(cfg, hf_config)
        self.template_text, self.template, self.pattern = template_text, template, pattern
        self.choices = ("A", "B") if cfg.judge_mode == "pairwise" else None
        self.memo: OrderedDict = OrderedDict()
        return self

    @classmethod
    def _load_local(cls, cfg, hf_config) -> "GenRM":
        from rmscore.models.judge_local import LocalJudge

        archs = hf_config.get("architectures") or []
        if archs and not any(a.endswith("ForCausalLM") for a in archs):
            raise ModelError(f"{cfg.path} is not a causal LM ({', '.join(archs)}): genrm generates with a *ForCausalLM",
                             "or serve the judge and pass --judge-url")
        self = cls.begin(cfg)
        self.chat_template = chat.require_template(self.tokenizer, cfg)
        model = LmJudge._load_lm(self, cfg)  # strict: a causal LM with its LM head (sets self.backbone)
        self.pad_id = loading.pad_id(model.config, self.tokenizer)
        self.max_length = loading.model_max_length(hf_config, self.tokenizer) - cfg.judge_max_tokens
        if self.max_length <= 0:
            raise ConfigError(f"--judge-max-tokens {cfg.judge_max_tokens} leaves no room for the question in "
                              f"{cfg.path}'s context", "lower --judge-max-tokens")
        self.backend = LocalJudge(model, self.tokenizer, self.pad_id, cfg.judge_max_tokens, self)
        return self

    def default_budget(self, max_length: int) -> int | None:
        # A served judge's memory is the server's: let serve's batcher hand over many questions
        # (characters) at once, for --concurrency to keep in flight. In-process: the forward's estimate.
        return SERVED_MAX_LENGTH if self.tokenizer is None else None

    def runners(self, path: str = "auto", batch_invariant: bool = False):
        if path != "auto":
            raise ConfigError(f"--forward {path} has no meaning for genrm: it generates", "drop --forward")
        if batch_invariant:  # batched generation pads and samples per batch: no bit-for-bit claim here
            raise ConfigError("--batch-invariant is not available for genrm: its verdicts are generated, and "
                              "generation is not made batch-invariant", "drop --batch-invariant")
        return GenerateRunners(GenerateRunner(self))

    # -- the question -------------------------------------------------------------------------
    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        return [self._encode(s) for s in samples]

    def _encode(self, sample: Sample) -> Encoded | RowError:
        try:
            questions = self._questions(sample)
        except RowError as problem:
            return problem
        except Exception as exc:  # a template error on one row's data: that row is not judged
            return RowError(records.INVALID_ROW, f"judge template failed: {str(exc).splitlines()[0]}")
        first, *swapped = [self._request(q) for q in questions]
        return Encoded(first, [len(first) - 1], payload=swapped[0] if swapped else None)

    def _questions(self, sample: Sample) -> list[str]:
        common = {"prompt": prompt_text(sample.prompt), "messages": sample.prompt}
        if self.choices is None:
            return [self.template.render(completion=sample.completion, **common)]
        siblings = sample.siblings or []
        if len(siblings) != 2:
            raise RowError(records.INVALID_ROW, f"pairwise judging needs rows with two completions (or chosen and "
                                                f"rejected); this row has {len(siblings)}")
        if not all(isinstance(c, str) for c in siblings):
            raise RowError(records.INVALID_ROW, "the other completion of this pair is invalid: nothing to compare with")
        mine, other = sample.completion, siblings[1 - sample.completion_index]
        return [self.template.render(completion_a=mine, completion_b=other, **common),
                self.template.render(completion_a=other, completion_b=mine, **common)]

    def _request(self, question: str) -> list[int]:
        """The question as ids: the judge's chat-templated tokens here, its characters for a server."""
        if self.tokenizer is None:
            return [ord(c) for c in question]
        conversation = [*chat.with_system([], self.cfg.system_prompt), {"role": "user", "content": question}]
        text = self.tokenizer.apply_chat_template([conversation], tokenize=False, add_generation_prompt=True,
                                                  date_string=chat.PINNED_DATE)
        return chat.tokenize(self.tokenizer, text, self.cfg.bos or "template")[0]

    def _send(self, ids: list[int]):
        if self.tokenizer is not None:
            return ids
        question = "".join(map(chr, ids))
        return [*chat.with_system([], self.cfg.system_prompt), {"role": "user", "content": question}]

    # -- the verdict --------------------------------------------------------------------------
    def judge(self, batch: list[Encoded]) -> list[dict]:
        """One output dict per row: each distinct question asked once, then every verdict read."""
        questions = [[e.ids] + ([e.payload] if e.payload is not None else []) for e in batch]
        asks = [[_digest(q) for q in qs] for qs in questions]
        todo = {k: q for ks, qs in zip(asks, questions) for k, q in zip(ks, qs) if k not in self.memo}
        replies = self.backend.replies([self._send(q) for q in todo.values()]) if todo else []
        self.memo.update(zip(todo, replies, strict=True))
        rows = [self._row([self.memo[k] for k in keys]) for keys in asks]
        while len(self.memo) > MEMO:
            self.memo.popitem(last=False)
        return rows

    def _row(self, replies: list[Reply]) -> dict:
        row = {"score": None, "judge_output": replies[0].text}
        if self.choices is not None:
            row |= {"judge_output_swapped": replies[1].text, "judge_consistent": None}
        failed = next((r.error for r in replies if r.error), None)
        if failed:
            return row | {"status": records.JUDGE_ERROR, "status_detail": failed}
        try:
            verdicts = [judge_prompts.verdict(r, self.pattern, self.choices) for r in replies]
        except Unparsed as why:
            return row | {"status": records.UNPARSED, "status_detail": str(why)}
        if self.choices is None:
            return row | {"score": verdicts[0]}
        wins = (verdicts[0] == "A") + (verdicts[1] == "B")  # A first, then B after the swap
        consistent = (verdicts[0] == "A") == (verdicts[1] == "B")
        self.counts["judge_inconsistent_rows"] += not consistent
        return row | {"score": wins / 2, "judge_consistent": consistent}

    def output_fields(self) -> list[pa.Field]:
        fields = [pa.field("judge_output", pa.string())]
        if self.choices is not None:
            fields += [pa.field("judge_output_swapped", pa.string()), pa.field("judge_consistent", pa.bool_())]
        return fields

    def metadata(self) -> dict:
        cfg = self.cfg
        return {"judge_backend": "http" if cfg.judge_url else "transformers", "judge_url": cfg.judge_url,
                "judge_model": cfg.judge_model, "judge_mode": cfg.judge_mode,
                "judge_template_hash": loading.template_hash(self.template_text),
                "judge_template_default": cfg.judge_template is None, "verdict_pattern": self.pattern.pattern,
                "judge_temperature": cfg.judge_temperature, "judge_seed": cfg.judge_seed,
                "judge_max_tokens": cfg.judge_max_tokens,
                "template_hash": loading.template_hash(getattr(self, "chat_template", None)),
                "date_string": chat.PINNED_DATE}


def _digest(ids: list[int]) -> bytes:
    return hashlib.blake2b(array("q", ids).tobytes(), digest_size=16).digest()


class GenerateRunner(Runner):
    """Stands where a forward runner stands: a batch of questions in, one output dict per row out."""

    def __init__(self, model: GenRM):
        super().__init__(model)
        self.name = "generate" if model.tokenizer is not None else "http"

    def plan(self, encs: list[Encoded], max_tokens: int, max_rows: int) -> list[list[int]]:
        if self.name == "http":  # everything in flight at once, in batches a stop can cut between
            size = min(max_rows, 4 * self.model.cfg.concurrency)
            return [list(range(i, min(i + size, len(encs)))) for i in range(0, len(encs), size)]
        new = self.model.cfg.judge_max_tokens
        return plan_batches([len(e) + new for e in encs], max(max_tokens, MIN_GENERATE_BUDGET), max_rows)

    def cost(self, batch: list[Encoded]) -> Cost:
        real = sum(len(e) for e in batch)
        padded = real if self.name == "http" else len(batch) * max(len(e) for e in batch)
        return Cost(real, real, padded)

    def collate(self, batch: list[Encoded], max_tokens: int | None = None) -> dict:
        return {}

    def outputs(self, batch: list[Encoded], inputs: dict | None = None, max_tokens: int | None = None) -> list[dict]:
        return self.model.judge(batch)


class GenerateRunners:
    """The one runner of a generative judge, in the shape of forward.Runners."""

    def __init__(self, runner: GenerateRunner):
        self.runner = runner

    def choose(self, encs: list[Encoded]) -> GenerateRunner:
        return self.runner
