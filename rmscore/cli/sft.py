"""`rmscore build-sft`: rejection-sampling SFT data (the best completions), with a report."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import SftConfig

SELECT = "Selection"
REASONS = {
    "no_usable": "no completion with status ok/truncated and a score",
    "not_in_top": "none of its completions in the best --top-fraction",
    "below_min_score": "every selected completion under --min-score",
}


@command("build-sft")
def build_sft(
    inputs: Annotated[list[str], typer.Argument(help="Output of rmscore score (or combine): folders or Parquet "
                                                     "files.", metavar="SCORED", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="The SFT Parquet file. The report goes next to it "
                                                               "as NAME.report.json.", show_default=False)],
    select: Annotated[str, typer.Option(help="per-prompt: the K best completions of each prompt. overall: the best "
                                             "--top-fraction of all completions.", rich_help_panel=SELECT)]
    = "per-prompt",
    per_prompt: Annotated[Optional[int], typer.Option(help="K, with --select per-prompt. Default: 1.", metavar="K",
                                                      rich_help_panel=SELECT, show_default=False)] = None,
    top_fraction: Annotated[Optional[float], typer.Option(
        help="F in (0, 1], with --select overall: keep the best F of all usable completions (rounded up).",
        metavar="F", rich_help_panel=SELECT, show_default=False)] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Also drop completions scoring below X.", metavar="X",
                                                       rich_help_panel=SELECT, show_default=False)] = None,
    score_column: Annotated[str, typer.Option(help="Numeric column to rank by, as in build-pairs: score_min (a "
                                                   "process reward model's aggregate), an ArmoRM objective name or "
                                                   "rewards[i].", rich_help_panel=SELECT)] = "score",
    format: Annotated[str, typer.Option("--format", help="conversational: TRL's `messages` (the prompt's messages "
                                                         "plus the answer). prompt-completion: `prompt` messages and "
                                                         "a `completion` list.")] = "conversational",
    baseline_out: Annotated[Optional[str], typer.Option(
        help="Also write a seeded random selection of the same size (per prompt, or the same total with "
             "--select overall) to this file: train on both to see what the reward model adds.",
        metavar="PATH", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="The baseline's draw: the same seed gives the same rows, however the "
                                           "input is sharded.")] = 0,
    buckets: Annotated[Optional[int], typer.Option(help="Group prompts in N hash buckets, one in memory at a time. "
                                                        "Default: from the input size.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files (and the report).")] = False,
    allow_mixed_models: Annotated[bool, typer.Option(
        help="Rank scores from inputs whose recorded reward models differ.", rich_help_panel=SELECT)] = False,
    allow_partial: o.AllowPartialOpt = False,
):
    """Keep the best-scored completions as supervised fine-tuning data (rejection sampling, best-of-N SFT).

    Completions are grouped by prompt_id and ranked by score; equal scores go to input order. Rows
    whose status is not ok/truncated, or that have no score, are never kept. Every row of the
    output has prompt_id and score; the report says how many prompts were kept and why the others
    were dropped. TRL's SFTTrainer takes the file as it is.

    Examples (after `make demo`, which scored the demo data into demo-out/scored):

    \b
      rmscore build-sft demo-out/scored -o demo-out/sft.parquet --overwrite
      rmscore build-sft demo-out/scored -o demo-out/sft-top.parquet --select overall --top-fraction 0.25 --baseline-out demo-out/sft-random.parquet --overwrite
      rmscore build-sft demo-out/scored -o demo-out/sft-pc.parquet --format prompt-completion --min-score 0 --overwrite
    """
    from rmscore.pairs.build_sft import run_build_sft

    cfg = SftConfig(inputs, output, select, per_prompt, top_fraction, min_score, score_column, format, baseline_out,
                    seed, buckets, overwrite, allow_mixed_models, allow_partial)
    summary = run_build_sft(cfg, log=lambda text: echo(f"[rmscore] {text}"))
    for line in report_lines(summary.report, summary.wall_s):
        echo(line)
    echo(f"  sft:    {summary.output}\n  report: {summary.report_path}")
    if summary.baseline:
        echo(f"  random baseline: {summary.baseline} ({summary.report['baseline']['rows']:,} rows)")


def report_lines(report: dict, wall_s: float) -> list[str]:
    prompts, comp = report["prompts"], report["completions"]
    dropped = prompts["dropped"]
    lines = [f"Kept {report['rows']:,} completions of {prompts['kept']:,} of {prompts['in']:,} prompts "
             f"(format {report['settings']['format']}) in {wall_s:.1f}s.",
             f"  prompts dropped: {sum(dropped.values()):,}"]
    width = max(map(len, dropped))
    lines += [f"    {reason:<{width}} {n:>9,}  {REASONS[reason]}" for reason, n in dropped.items()]
    by_status = ", ".join(f"{s} {n:,}" for s, n in comp["bad_status_by_status"].items())
    lines.append(f"  completions: {comp['in']:,} in, {comp['usable']:,} usable, {comp['kept']:,} kept; "
                 f"not kept: bad status {comp['bad_status']:,}{f' ({by_status})' if by_status else ''}, "
                 f"not selected {comp['not_selected']:,}, below --min-score {comp['below_min_score']:,}")
    return lines
