"""`rmscore inspect`: distributions, length bias and examples of scored output or a pairs file."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import InspectConfig


@command("inspect")
def inspect(
    inputs: Annotated[list[str], typer.Argument(help="A folder written by rmscore score (every part-*.parquet below "
                                                     "it, so all shards), several shard folders, or one pairs file "
                                                     "written by rmscore build-pairs.",
                                                metavar="PATH", show_default=False)],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Folder for inspect.json, the PNGs and report.html. "
                                                                         "Default: NAME-inspect beside PATH.",
                                                  show_default=False)] = None,
    score_column: Annotated[str, typer.Option(help="Scored output: the numeric column to look at, e.g. score_min "
                                                   "(a process reward model's aggregate), or one objective of a multi-objective model (an ArmoRM "
                                                   "objective name, or rewards[i]).")] = "score",
    no_text: Annotated[bool, typer.Option("--no-text", help="Print and write no prompt or completion text (e.g. "
                                                            "red-team data): examples show scores and ids only.")]
    = False,
    sample_rows: Annotated[int, typer.Option(help="Rows drawn at random for the score-vs-length plot and the wide "
                                                  "columns (objectives, step scores); every other number uses every "
                                                  "row.")] = 100_000,
    allow_partial: o.AllowPartialOpt = False,
    html_rows: Annotated[int, typer.Option(help="Rows report.html holds: the extremes, then a seeded random draw "
                                                "(whole prompts for scored output). 0: the summary only.")] = 2000,
):
    """Look at the scores before training on them: do they look sane, and do they prefer longer answers?

    For scored output: rows by status with the reasons, the score distribution, ArmoRM objectives
    or process-reward step scores, length bias (Spearman rank correlation of score with length over
    all rows and within prompts), and the 3 highest- and lowest-scored completions. For a pairs
    file: margins, how often and by how much the chosen answer is longer, and the within-prompt
    correlation. Prints one screen; writes inspect.json, PNGs (with the plot extra) and report.html, one
    self-contained page to open in a browser: the summary, and a table of the rows (sort, filter).

    Examples (after `make demo`, which wrote demo-out/scored and demo-out/pairs.parquet; --no-text
    because the demo texts are HH-RLHF red-team material: drop it to see them):

    \b
      rmscore inspect demo-out/scored --no-text
      rmscore inspect demo-out/pairs.parquet -o demo-out/pairs-report --no-text

    With a Hub model (downloads it):

    \b
      rmscore score data/prm800k_phase1_test_trajectories.jsonl.gz -m Qwen/Qwen2.5-Math-PRM-7B --prompt-col problem -o prm-scored/
      rmscore inspect prm-scored/ --score-column score_min
    """
    from rmscore.inspect import run_inspect

    result = run_inspect(InspectConfig(inputs, output, score_column, not no_text, sample_rows, allow_partial,
                                       html_rows))
    for line in result.lines:
        echo(line)
    written = ", ".join(path.name for name, path in result.files.items() if name not in ("report", "html"))
    echo(f"  wrote {result.files['report']}" + (f" and {written}" if written else ""))
    echo(f"  open {result.files['html']} in a browser: the summary, and the rows to sort and filter")
    if result.missing_plots:
        echo(f"  no PNGs: {result.missing_plots}")
