"""Options shared by several commands, declared once as Annotated aliases."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Optional

import typer

from rmscore.config import ModelConfig


MODEL = "Model"
INPUT = "Input columns"
BATCH = "Batching and length"
OUT = "Output"

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Checkpoint folder, Hub name, or a .gguf file (weights dequantized on load: a way to "
                              "get weights, not a speed-up). Default: the demo reward model shipped with rmscore "
                              "(rmscore/data/demo-rm).",
        rich_help_panel=MODEL, show_default=False,
    ),
]
ModelTypeOpt = Annotated[
    str, typer.Option(help="Reward-model family (see `rmscore models`), or auto to detect it from config.json.",
                      rich_help_panel=MODEL)
]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).", rich_help_panel=MODEL)]
DtypeOpt = Annotated[str, typer.Option(help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16.",
                                       rich_help_panel=MODEL)]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.", rich_help_panel=MODEL)]
DeviceMapOpt = Annotated[
    Optional[str],
    typer.Option(help="'auto' splits a model too big for one GPU across all visible GPUs (accelerate). "
                      "Fits big models; for speed, prefer one replica per GPU with torchrun.", rich_help_panel=MODEL),
]
AttnOpt = Annotated[Optional[str], typer.Option(help="sdpa, eager, flash_attention_2, flex_attention, ...",
                                                rich_help_panel=MODEL)]
TrustOpt = Annotated[bool, typer.Option(help="Run the checkpoint's own Python code. Off: a model folder must never "
                                             "be a way in.", rich_help_panel=MODEL)]
PickleOpt = Annotated[bool, typer.Option(help="Load pickle (.bin) weights, which can run code. Off by default.",
                                         rich_help_panel=MODEL)]
TemplateOpt = Annotated[Optional[str], typer.Option(help="Jinja chat template (file or string) replacing the "
                                                         "checkpoint's.", rich_help_panel=MODEL)]
SystemOpt = Annotated[Optional[str], typer.Option(help="System prompt added to conversations that have none. "
                                                       "Default: the model family's reference behaviour.",
                                                  rich_help_panel=MODEL)]
BosOpt = Annotated[Optional[str], typer.Option(help="template: one BOS, as apply_chat_template(tokenize=True) gives. "
                                                    "double: a second BOS, as card code that re-tokenizes rendered "
                                                    "text gives (GRM). Default: the family's reference (double only "
                                                    "for internlm2).", rich_help_panel=MODEL, show_default=False)]
StepSepOpt = Annotated[Optional[str], typer.Option(help="Process reward models: split completions into steps on this "
                                                        "string ('\\n' is a newline). Default: the family's own rule "
                                                        "(see `rmscore models`). Unused when the input has a steps "
                                                        "column.", rich_help_panel=MODEL)]
AggregateOpt = Annotated[str, typer.Option(help="Process reward models: which step aggregate becomes `score`: min, "
                                                "prod, mean or last. All four are written as "
                                                "score_min, score_prod, score_mean, score_last, with step_scores.",
                                           rich_help_panel=MODEL)]
StepTokensOpt = Annotated[Optional[str], typer.Option(help="step-tag models: 'TAG GOOD BAD', the step tag and the "
                                                           "label tokens whose logits are read. Default: 'ки + -' "
                                                           "(Math-Shepherd).", rich_help_panel=MODEL)]
JudgeTemplateOpt = Annotated[Optional[str], typer.Option(
    help="lm-judge: Jinja template (file or text) of the question put to the model as one user turn; it can use "
         "{{ prompt }}, {{ completion }} and {{ messages }}. Default: a correctness/helpfulness question ending in "
         "'Answer Yes or No.'", rich_help_panel=MODEL, show_default=False)]
ScoreTokensOpt = Annotated[Optional[str], typer.Option(
    help="lm-judge: 'POS NEG', the two answer tokens compared at the answer position; each must be one token "
         "(no leading space). Default: 'Yes No'.", rich_help_panel=MODEL, show_default=False)]
GgufOpt = Annotated[Optional[str], typer.Option(
    help="A GGUF file inside the --model folder or Hub repo (needs pip install 'rmscore[gguf]'). Its weights are "
         "dequantized to --dtype on load: GGUF is a way to get weights here, not a speed-up. -m FILE.gguf does "
         "the same.", rich_help_panel=MODEL, show_default=False)]
MaxLengthOpt = Annotated[Optional[int], typer.Option(help="Longest input in tokens. Default: the model's limit.",
                                                     rich_help_panel=BATCH)]
OverflowOpt = Annotated[str, typer.Option(help="A row over --max-length: skip (written with status too_long, no "
                                               "score), truncate-left (keep the end, where the reward is read), error.",
                                          rich_help_panel=BATCH)]
TokenBudgetOpt = Annotated[Optional[int], typer.Option(help="Padded tokens per forward (rows x longest row). "
                                                            "Default: 512 on CPU (the fastest measured); on a GPU, "
                                                            "what free memory holds for this model's activations, "
                                                            "capped at 65,536.",
                                                       rich_help_panel=BATCH)]
BatchSizeOpt = Annotated[int, typer.Option(help="Most rows per forward, whatever the token budget.",
                                           rich_help_panel=BATCH)]
WindowOpt = Annotated[int, typer.Option(help="Rows read ahead and sorted by length together. Bounds memory.",
                                        rich_help_panel=BATCH)]
SplitOpt = Annotated[str, typer.Option(help="Split of a Hub dataset or DatasetDict folder.", rich_help_panel=INPUT)]
JsonColumnsOpt = Annotated[Optional[str], typer.Option(
    help="Comma-separated columns whose text cells hold JSON (a file that stores message lists as strings): "
         "each cell is decoded, and one that is not JSON is an invalid row. Elsewhere a string is always text; "
         "CSV/TSV list columns (messages, completions, steps) are JSON without this.",
    rich_help_panel=INPUT, show_default=False)]
LimitOpt = Annotated[Optional[int], typer.Option(help="Read only the first N input rows.", rich_help_panel=INPUT)]
AllowPartialOpt = Annotated[bool, typer.Option(
    help="Read a scored folder whose shards have not all finished (only its finished parts). Off: such a folder, "
         "like one mixing shard counts, is refused as merge refuses it.")]
ProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress",
                                                     help="Progress bar. Default: on a terminal only; log lines "
                                                          "otherwise.", show_default=False)]


def unescape(text: str | None) -> str | None:
    """'\\n' and '\\t' typed on a command line mean a newline and a tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t") if text is not None else None


def model_config(params: dict) -> ModelConfig:
    """A command's ModelConfig from its parameters (pass locals()): every model option is named like
    its field, except --model, which is `path`. Options a command lacks keep their defaults."""
    names = {f.name for f in fields(ModelConfig)} - {"path"}
    return ModelConfig(path=params["model"], **{k: v for k, v in params.items() if k in names})


def split_list(text: str | None) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []
