"""`rmscore best-of-n`: accuracy-at-N curves from scored completions with correctness labels."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command
from rmscore.config import BestOfNConfig
from rmscore.errors import ConfigError
from rmscore.evaluate.plots import LABELS

COLUMNS = {"reward_model": "reward model", "random": "random", "oracle": "oracle", "majority_vote": "majority",
           "weighted_vote": "weighted"}


@command("best-of-n")
def best_of_n(
    scored: Annotated[str, typer.Argument(help="Folder written by `rmscore score` (or one of its Parquet files).",
                                          show_default=False)],
    label_column: Annotated[str, typer.Option(help="Column saying whether a completion is correct: true/false or "
                                                   "0/1, or a list with one label per completion (kept from a "
                                                   "prompt + completions row).", show_default=False)],
    answer_column: Annotated[Optional[str], typer.Option(help="Column with each completion's final answer (or a "
                                                              "list of them): adds majority and reward-weighted "
                                                              "votes. Answers are compared exactly; empty abstains.")]
    = None,
    score_column: Annotated[str, typer.Option(help="Column the reward model's pick uses, or one objective of a "
                                                   "multi-objective model (an ArmoRM objective name, or rewards[i]).")]
    = "score",
    n: Annotated[str, typer.Option("--n", help="Comma-separated N values; capped at the largest number of "
                                               "completions per prompt.")] = "1,2,4,8,16,32,64",
    vote_weight: Annotated[str, typer.Option(help="Weighted vote: exp = sum of exp(score) per answer (Bradley-Terry "
                                                  "strength; for logit rewards), score = sum of raw scores (for "
                                                  "probabilities, e.g. PRMs).")] = "exp",
    samples: Annotated[int, typer.Option(help="Weighted vote only: random draws per prompt when a prompt has too "
                                              "many N-subsets to enumerate (C(M, N) x M over 4M); the table then "
                                              "shows a standard error.")]
    = 2000,
    seed: Annotated[int, typer.Option(help="Seed of those draws.")] = 0,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Folder for bestofn.json and bestofn.png.",
                                                  rich_help_panel=o.OUT)] = None,
    allow_partial: o.AllowPartialOpt = False,
):
    """Accuracy of picking the top-scored of N completions, for each N, against a random pick,
    the oracle (any correct) and, with --answer-column, majority and reward-weighted votes.

    Exact expectations over all N-subsets of each prompt's completions (ties shared evenly), not
    sampling. A prompt with fewer completions than N uses all it has.

    Examples (after `make demo`: GSM8K solutions with correctness labels, shipped in data/; drop --limit
    to score all 1,319 questions):

    \b
      python recipes/gsm8k_bon.py -o demo-out/gsm8k_bon4.jsonl
      rmscore score demo-out/gsm8k_bon4.jsonl -o demo-out/gsm8k-scored --keep-columns is_correct,answer --limit 100
      rmscore best-of-n demo-out/gsm8k-scored --label-column is_correct --answer-column answer -o demo-out/gsm8k-bon
    """
    from rmscore.evaluate.run import run_best_of_n

    cfg = BestOfNConfig(scored, label_column, answer_column, score_column, parse_ns(n), vote_weight, samples, seed,
                        output, allow_partial)
    report = run_best_of_n(cfg)
    for line in table(report):
        typer.echo(line)


def parse_ns(text: str) -> list[int]:
    try:
        return [int(part) for part in o.split_list(text)]
    except ValueError:
        raise ConfigError(f"--n must be comma-separated whole numbers, got {text!r}") from None


def table(report: dict) -> list[str]:
    sizes = report["completions_per_prompt"]
    each = f"{sizes['min']}" if sizes["min"] == sizes["max"] else f"{sizes['min']}-{sizes['max']}"
    names = list(report["accuracy"])
    lines = [f"Best-of-N on {report['prompts']:,} prompts ({each} completions each), model {report['model']}, "
             f"label {report['label_column']}",
             f"{'N':>5}" + "".join(f"{COLUMNS[name]:>14}" for name in names)]
    for k, n in enumerate(report["n"]):
        cells = [_cell(report["accuracy"][name][k], report["stderr"][name][k]) for name in names]
        lines.append(f"{n:>5}" + "".join(f"{c:>14}" for c in cells))
    if "weighted_vote" in names:
        lines.append(f"weighted = {LABELS['weighted_vote']} with {report['vote_weight']} weights")
    capped = [f"N={n}: {c:,}" for n, c in zip(report["n"], report["prompts_with_fewer_than_n"]) if c]
    if capped:
        lines.append(f"prompts with fewer than N completions (they use all they have): {', '.join(capped)}")
    for reason, count in report["skipped_rows"].items():
        lines.append(f"rows left out: {count:,} {reason}")
    if "files" in report:
        lines.append(f"wrote {report['files']['json']} and {report['files']['plot']}")
    return lines


def _cell(value: float, stderr: float) -> str:
    return f"{100 * value:.1f}%" + (f" ±{100 * stderr:.1f}" if stderr else "")
