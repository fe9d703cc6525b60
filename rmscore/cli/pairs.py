"""`rmscore build-pairs`: preference pairs from scored completions, with a drop report."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import PairConfig

SELECT = "Selection"
REASONS = {
    "too_few_completions": "fewer rows than --min-completions",
    "bad_status": "too few completions with status ok/truncated and a score",
    "identical": "too few distinct texts after whitespace normalisation",
    "ties": "every candidate pair had equal scores",
    "below_margin": "no candidate pair reached --min-margin",
    "disagreement": "no candidate pair reached --min-agreement",
    "length_ratio": "every candidate's chosen over --max-length-ratio x its rejected's length",
}


@command("build-pairs")
def build_pairs(
    inputs: Annotated[list[str], typer.Argument(help="Output of rmscore score: folders (every part-*.parquet below "
                                                     "them) or Parquet files, e.g. several shards.",
                                                metavar="SCORED", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="The pairs Parquet file. The drop report goes next "
                                                               "to it as NAME.report.json.", show_default=False)],
    rule: Annotated[str, typer.Option(help="max-min (best vs worst), max-random (best vs a seeded random other), "
                                           "best-vs-rest (best vs each other), all-pairs (every pair clearing the "
                                           "margin).", rich_help_panel=SELECT)] = "max-min",
    min_margin: Annotated[float, typer.Option(help="Smallest score gap chosen - rejected. Ties (gap 0) never pair.",
                                              rich_help_panel=SELECT)] = 0.0,
    min_completions: Annotated[int, typer.Option(help="Distinct scored completions a prompt needs.",
                                                 rich_help_panel=SELECT)] = 2,
    pairs_per_prompt: Annotated[Optional[int], typer.Option(
        help="Most pairs per prompt, largest margin first. Default: 1 for max-random, all for best-vs-rest and "
             "all-pairs.", rich_help_panel=SELECT, show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="max-random: the same seed gives the same pairs, however the input is "
                                           "sharded.", rich_help_panel=SELECT)] = 0,
    score_column: Annotated[str, typer.Option(help="Numeric column to rank by, e.g. score_min (a process reward "
                                                   "model's aggregate), or one objective of a multi-objective model: "
                                                   "an ArmoRM objective name (helpsteer-correctness) or rewards[i].",
                                              rich_help_panel=SELECT)] = "score",
    max_length_ratio: Annotated[Optional[float], typer.Option(
        help="Length control: drop a candidate pair whose chosen is more than R times as long (in characters) as "
             "its rejected. With max-min the prompt then has no pair; best-vs-rest --pairs-per-prompt 1 falls back "
             "to the largest margin within the ratio.", metavar="R", rich_help_panel=SELECT, show_default=False)] = None,
    min_agreement: Annotated[Optional[float], typer.Option(
        help="Output of rmscore combine: keep a pair only if at least this share of the models, each by its own "
             "score, prefers chosen (1: all of them). Every pair gets an `agreement` column.", metavar="X",
        rich_help_panel=SELECT, show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="auto (conversational, or standard when every prompt was "
                                                         "text), conversational, standard, simpo, kto (TRL's "
                                                         "unpaired prompt/completion/label rows for KTOTrainer: "
                                                         "chosen true, rejected false).")] = "auto",
    buckets: Annotated[Optional[int], typer.Option(help="Group prompts in N hash buckets, one in memory at a time. "
                                                        "Default: from the input size (~8 MiB of columns each).",
                                                   show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file (and its report).")] = False,
    allow_mixed_models: Annotated[bool, typer.Option(
        help="Pair scores from inputs whose recorded reward models differ (compared by the checkpoint's content "
             "digest, not the -m string).", rich_help_panel=SELECT)] = False,
    allow_partial: o.AllowPartialOpt = False,
):
    """Turn scored completions into (chosen, rejected) preference pairs that TRL trains on.

    Completions are grouped by prompt_id. Rows whose status is not ok/truncated, or that have no
    score, never enter a pair; nor do ties or texts identical after whitespace normalisation.
    Every drop is counted: a summary is printed and written as JSON next to the output.

    Examples (after `make demo`, which scored the demo data into demo-out/scored):

    \b
      rmscore build-pairs demo-out/scored -o demo-out/pairs.parquet --overwrite
      rmscore build-pairs demo-out/scored -o demo-out/pairs-rest.parquet --rule best-vs-rest --min-margin 0.5 --overwrite
      rmscore build-pairs demo-out/scored -o demo-out/simpo.parquet --format simpo --overwrite
      rmscore build-pairs demo-out/scored -o demo-out/pairs-1.5x.parquet --max-length-ratio 1.5 --overwrite
      rmscore build-pairs demo-out/scored -o demo-out/kto.parquet --format kto --overwrite

    With a Hub model (downloads it), pairs of GSM8K solutions by their weakest step:

    \b
      python recipes/gsm8k_bon.py -o demo-out/gsm8k_bon4.jsonl
      rmscore score demo-out/gsm8k_bon4.jsonl -m Qwen/Qwen2.5-Math-PRM-7B --step-separator '\\n' -o demo-out/gsm8k-prm
      rmscore build-pairs demo-out/gsm8k-prm -o demo-out/gsm8k-prm-pairs.parquet --score-column score_min --overwrite
    """
    from rmscore.pairs.build import run_build_pairs

    cfg = PairConfig(inputs, output, rule, format, score_column, min_margin, min_completions, pairs_per_prompt,
                     seed, buckets, overwrite, max_length_ratio=max_length_ratio,
                     allow_mixed_models=allow_mixed_models, allow_partial=allow_partial,
                     min_agreement=min_agreement)
    summary = run_build_pairs(cfg, log=lambda text: echo(f"[rmscore] {text}"))
    for line in report_lines(summary.report, summary.wall_s):
        echo(line)
    rows = f" ({summary.report['rows']:,} KTO rows)" if "rows" in summary.report else ""
    echo(f"  pairs:  {summary.output}{rows}\n  report: {summary.report_path}")


def report_lines(report: dict, wall_s: float) -> list[str]:
    prompts, comp, cand = report["prompts"], report["completions"], report["candidate_pairs"]
    dropped = prompts["dropped"]
    lines = [
        f"Built {report['pairs']:,} pairs from {prompts['paired']:,} of {prompts['in']:,} prompts "
        f"(rule {report['settings']['rule']}, format {report['settings']['format']}) in {wall_s:.1f}s.",
        f"  prompts dropped: {sum(dropped.values()):,}",
    ]
    width = max(map(len, dropped))
    lines += [f"    {reason:<{width}} {n:>9,}  {REASONS[reason]}" for reason, n in dropped.items()]
    by_status = ", ".join(f"{s} {n:,}" for s, n in comp["bad_status_by_status"].items())
    lines.append(f"  completions: {comp['in']:,} in, {comp['distinct']:,} distinct and scored; "
                 f"not usable: bad status {comp['bad_status']:,}{f' ({by_status})' if by_status else ''}, "
                 f"identical {comp['identical']:,}")
    lines.append(f"  candidate pairs: {cand['considered']:,} considered, {cand['kept']:,} kept; dropped: "
                 f"ties {cand['ties']:,}, below margin {cand['below_margin']:,}, "
                 f"{f'disagreement {n:,}, ' if (n := cand['disagreement']) else ''}"
                 f"length ratio {cand['length_ratio']:,}, "
                 f"not selected {cand['not_selected']:,}")
    return lines
