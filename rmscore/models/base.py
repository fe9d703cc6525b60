"""The adapter interface every reward-model family implements.

The scoring loop only ever sees this interface. A family differs in three places, all here:
  encode()  how a (prompt, completion) is rendered to token ids, and which positions are read;
  head()    how the hidden states at those positions become scores;
  load()    how the checkpoint's weights are put into modules (published parameter names).
The backbone forward itself (padding, packing, prompt reuse) is shared: see rmscore/forward.py.
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from rmscore.config import ModelConfig
from rmscore.errors import RowError
from rmscore.score import records
from rmscore.score.records import Encoded, Sample

if TYPE_CHECKING:
    import pyarrow as pa
    import torch


class RewardModel:
    name: ClassVar[str]  # the --model-type key
    summary: ClassVar[str]  # one line for `rmscore models`
    reads: ClassVar[str]  # which positions the head reads
    outputs: ClassVar[str]  # which output columns it adds
    examples: ClassVar[str] = ""
    prompts: ClassVar[str] = ""  # which prompt shapes the family's reference takes, for `rmscore models`
    # Causal decoders never look right, so right padding needs no attention mask and packing is
    # exact. Encoders (DeBERTa) attend both ways: they need a mask and cannot be packed.
    is_causal: ClassVar[bool] = True
    # Process reward models score each step of a completion (rmscore/models/steps.py); an outcome
    # model given a step column stops instead of silently ignoring it.
    reads_steps: ClassVar[bool] = False
    # Extra keyword arguments for every backbone call. Decoders must not build a KV cache.
    backbone_kwargs: ClassVar[dict] = {"use_cache": False}
    # Families that run the checkpoint's own Python code: auto-detection picks them only when the
    # user passed --trust-remote-code, and only after every native family has said no.
    runs_remote_code: ClassVar[bool] = False
    # Families that load a stock *ForCausalLM through transformers, which is what its GGUF reader
    # builds. Others would get a randomly initialised head, or no weights at all: they refuse GGUF.
    loads_gguf: ClassVar[bool] = False
    # Families that generate text (a judge's critique) instead of reading hidden states: no forward
    # paths to compare, so `rmscore doctor` has nothing to check.
    generates: ClassVar[bool] = False

    # Set by load():
    backbone: "torch.nn.Module"
    tokenizer: object
    pad_id: int
    max_length: int
    device: "torch.device"

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        # Counts of the family's own work (a generative judge's requests, retries, tokens
        # generated); the engine points this at the run summary's `counts`.
        self.counts: Counter = Counter()

    @classmethod
    def reads_checkpoint(cls, cfg: ModelConfig) -> bool:
        """False when this configuration loads no local checkpoint (a judge served over HTTP):
        there is no config.json to read or to check the family against."""
        return True

    def default_budget(self, max_length: int) -> int | None:
        """Tokens per batch when the user gives none; None: what the device's memory holds for a
        forward (forward.default_token_budget)."""
        return None

    def runners(self, path: str = "auto", batch_invariant: bool = False):
        """How batches of this model's rows are run: the forward runners, and the choice between
        them (rmscore/score/forward/). A generative judge runs generation instead."""
        from rmscore.score.forward import Runners

        return Runners(self, path, batch_invariant)

    @classmethod
    def matches(cls, hf_config: dict) -> bool:
        """True when config.json says the checkpoint is of this family (for --model-type auto).

        hf_config is config.json as a dict plus `_rmscore_path` (the --model value), for families
        that can only be recognised by their checkpoint's name."""
        return False

    @classmethod
    def load(cls, cfg: ModelConfig, hf_config: dict) -> "RewardModel":
        raise NotImplementedError

    @classmethod
    def begin(cls, cfg: ModelConfig, load_tokenizer=None) -> "RewardModel":
        """The start of every load(): device and dtype resolved, the weights policy checked (no
        pickle unless asked) before anything is read, the tokenizer loaded."""
        from rmscore.models import loading

        self = cls(cfg)
        self.device = loading.resolve_device(cfg.device)
        self.dtype = loading.resolve_dtype(cfg.dtype, self.device)
        loading.check_weights_policy(cfg)
        self.tokenizer = (load_tokenizer or loading.load_tokenizer)(cfg)
        return self

    def encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        """Token ids and read positions for each sample, in order. A sample that cannot be
        rendered gives a RowError in its place; the run goes on."""
        raise NotImplementedError

    def encode_rendered(self, texts: list[str]) -> list[Encoded | RowError]:
        """Token ids and read positions of conversations already rendered as text by a policy
        (special tokens kept), read where this family reads. Tokenized as they stand: no special
        tokens added beyond what the family's BOS policy adds to its own renderings (so a leading BOS
        is never doubled, unless --bos double asks for the card's second BOS), and a text rendered
        with this model's template gives exactly what encode() gives for the same messages.
        Families whose input is not one rendered conversation (text pairs) say so per row; process
        reward models read the steps' markers in the text (rmscore/models/steps.py)."""
        return [RowError(records.INVALID_ROW, f"{self.name} models do not read a conversation rendered as text; "
                                              "send the prompt and completion (or messages) instead")
                for _ in texts]

    @cached_property
    def rendered_text(self):
        """Mends a policy's rendered conversation into this model's own rendering (chat.RenderedText)."""
        from rmscore.models.chat import RenderedText

        return RenderedText(self.tokenizer)

    def head(self, hidden: "torch.Tensor", batch: list[Encoded]) -> "dict[str, torch.Tensor] | list[dict]":
        """Scores from the hidden states at every read position of the batch, left on the device.

        hidden: (sum of len(e.positions) over batch, hidden_size), in batch order.
        Returns {column: tensor}, each (len(batch), ...) or, for per-position columns,
        (sum of positions, ...); `score` is always one of them. The loop copies them to the host
        once per window and hands them to rows(). (Returning one output dict per sample also
        works, at the cost of a device sync per batch.)
        """
        raise NotImplementedError

    def rows(self, columns: dict[str, list], batch: list[Encoded]) -> list[dict]:
        """One dict of output columns per sample, from head()'s columns as host lists."""
        return [{name: values[i] for name, values in columns.items()} for i in range(len(batch))]

    def output_fields(self) -> list["pa.Field"]:
        """Output columns this family adds beside `score` (vectors, step scores, ...)."""
        return []

    def metadata(self) -> dict:
        """What went into the numbers: written into the output's schema metadata."""
        return {}
