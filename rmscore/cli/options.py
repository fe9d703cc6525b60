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
RAY = "Ray (docs/ray.md)"
JUDGE = "Generative judge (--model-type genrm, docs/genrm.md)"

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
    help="lm-judge, genrm: Jinja template (file or text) of the question put to the model as one user turn; it can "
         "use {{ prompt }}, {{ completion }} and {{ messages }} (genrm pairwise: {{ completion_a }} and "
         "{{ completion_b }}). Default: lm-judge asks a question ending in 'Answer Yes or No.'; genrm asks for a "
         "critique, then 'Rating: [[N]]' (1-10), or pairwise '[[A]]' or '[[B]]' (docs/genrm.md).",
    rich_help_panel=MODEL, show_default=False)]
ScoreTokensOpt = Annotated[Optional[str], typer.Option(
    help="lm-judge: 'POS NEG', the two answer tokens compared at the answer position; each must be one token "
         "(no leading space). Default: 'Yes No'.", rich_help_panel=MODEL, show_default=False)]
GgufOpt = Annotated[Optional[str], typer.Option(
    help="A GGUF file inside the --model folder or Hub repo (needs pip install 'rmscore[gguf]'). Its weights are "
         "dequantized to --dtype on load: GGUF is a way to get weights here, not a speed-up. -m FILE.gguf does "
         "the same.", rich_help_panel=MODEL, show_default=False)]
JudgeUrlOpt = Annotated[Optional[str], typer.Option(
    help="Ask a served judge: any OpenAI-compatible server (vllm serve, SGLang, TGI, llama.cpp, a hosted API), e.g. "
         "http://127.0.0.1:8000/v1. Implies --model-type genrm. Without it, genrm generates in-process with -m.",
    rich_help_panel=JUDGE, show_default=False)]
JudgeModelOpt = Annotated[Optional[str], typer.Option(
    help="The served model's name, sent as \"model\" (vllm serve NAME serves NAME). Needed with --judge-url.",
    rich_help_panel=JUDGE, show_default=False)]
JudgeKeyEnvOpt = Annotated[Optional[str], typer.Option(
    help="Name of the environment variable holding the server's API key (sent as a Bearer token). The key itself "
         "never goes on the command line or into the output.", rich_help_panel=JUDGE, show_default=False)]
JudgeModeOpt = Annotated[str, typer.Option(
    help="pointwise: each completion rated alone; score = the number in the verdict. pairwise: rows with two "
         "completions (or chosen/rejected), each pair asked in both orders; score = share of the two verdicts won "
         "(0, 0.5, 1).", rich_help_panel=JUDGE)]
VerdictPatternOpt = Annotated[Optional[str], typer.Option(
    help="Regex with one group, the verdict; its last match in the reply counts. Default: 'Rating: [[N]]' "
         "(pointwise) or '[[A]]'/'[[B]]' (pairwise). No match: status unparsed, the reply kept, no score.",
    rich_help_panel=JUDGE, show_default=False)]
JudgeTemperatureOpt = Annotated[float, typer.Option(
    help="Sampling temperature of a served judge. 0: greedy.", rich_help_panel=JUDGE)]
JudgeSeedOpt = Annotated[Optional[int], typer.Option(
    help="Sent as \"seed\" to a served judge (vLLM and SGLang sample reproducibly with one).",
    rich_help_panel=JUDGE, show_default=False)]
JudgeMaxTokensOpt = Annotated[int, typer.Option(help="Longest reply (critique + verdict) in tokens. A reply cut "
                                                      "before its verdict is unparsed.", rich_help_panel=JUDGE)]
JudgeTimeoutOpt = Annotated[float, typer.Option(help="Seconds one request to a served judge may take.",
                                                rich_help_panel=JUDGE)]
JudgeRetriesOpt = Annotated[int, typer.Option(
    help="Tries per request on 408/429/5xx (waiting what Retry-After says), timeouts and dropped connections; "
         "then the run stops with its finished rows saved (rerun to continue).", rich_help_panel=JUDGE)]
ConcurrencyOpt = Annotated[int, typer.Option(help="Requests in flight to a served judge.", rich_help_panel=JUDGE)]
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
BatchInvariantOpt = Annotated[bool, typer.Option(
    help="Bit-identical scores whatever the batch size, budget, input order, shards, resume point or other "
         "requests: each row padded to a length set by its own length (at most +12.5%), batches of one such "
         "length, padded layout only. Same hardware, library versions and dtype; no GPU claim yet.",
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
