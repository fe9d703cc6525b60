"""`rmscore combine`: one scored folder from several reward models' scores of the same input."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli.app import command, echo
from rmscore.config import CombineConfig


@command("combine")
def combine(
    inputs: Annotated[list[str], typer.Argument(help="Scored folders written by rmscore score, one per reward model, "
                                                     "all from the same input.", metavar="SCORED",
                                                show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="The ensemble's scored folder (new, or an earlier "
                                                               "combine's with --overwrite).", show_default=False)],
    method: Annotated[str, typer.Option(help="mean-z: each model's scores standardised over its usable rows, then "
                                             "averaged. mean, min: of the raw scores. vote: the share of models that "
                                             "rank the completion first within its prompt.")] = "mean-z",
    score_column: Annotated[str, typer.Option(help="The column read from every input: score, score_min, an ArmoRM "
                                                   "objective or rewards[i].")] = "score",
    buckets: Annotated[Optional[int], typer.Option(help="Group prompts in N hash buckets, one in memory at a time. "
                                                        "Default: from the input size.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the folder an earlier combine wrote.")] = False,
):
    """Combine several reward models' scores of the same completions into one scored folder.

    The folders must come from the same input (their manifests are compared); rows are matched by
    input_index and completion_index. The output reads like any scored folder (build-pairs,
    build-sft, inspect, best-of-n): `score` is the combination, `model_scores` each model's own
    score in argument order, and a row is ok only if every model scored it. On it, build-pairs adds
    an `agreement` column (and takes --min-agreement) and inspect shows how often the models agree.

    Examples (after `make demo`; the second scoring reads at most 96 tokens per completion, a
    stand-in for a second reward model):

    \b
      rmscore score data/demo/hh_rlhf_demo.jsonl -o demo-out/scored-96 --max-length 96 --on-overflow truncate-left
      rmscore combine demo-out/scored demo-out/scored-96 -o demo-out/ensemble --overwrite
      rmscore build-pairs demo-out/ensemble -o demo-out/pairs-agreed.parquet --min-agreement 1 --overwrite

    With a Hub model (downloads them), two real reward models as one ensemble, the pairs they agree on:

    \b
      rmscore score data/demo/hh_rlhf_demo.jsonl -m Skywork/Skywork-Reward-V2-Qwen3-0.6B -o demo-out/scored-skywork
      rmscore score data/demo/hh_rlhf_demo.jsonl -m OpenAssistant/reward-model-deberta-v3-large-v2 -o demo-out/scored-oa
      rmscore combine demo-out/scored-skywork demo-out/scored-oa -o demo-out/ensemble-hub --overwrite
      rmscore build-pairs demo-out/ensemble-hub -o demo-out/pairs-hub.parquet --min-agreement 1 --overwrite
    """
    from rmscore.ensemble.combine import run_combine

    cfg = CombineConfig(inputs, output, method, score_column, buckets, overwrite)
    summary = run_combine(cfg, log=lambda text: echo(f"[rmscore] {text}"))
    p = summary.provenance
    echo(f"Combined {len(p['models'])} reward models ({p['combine']['method']}): {p['rows']:,} rows, "
         f"{p['usable']:,} scored by every model, in {summary.wall_s:.1f}s.")
    for i, model in enumerate(p["models"]):
        echo(f"  model_scores[{i}]: {model}")
    echo(f"  output: {summary.output}")
