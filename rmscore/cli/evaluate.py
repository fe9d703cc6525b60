"""`rmscore eval`: a reward model's accuracy on preference pairs or multiple-choice questions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import (
    BatchConfig, ColumnMap, EvalConfig, InputConfig, McColumns, OutputConfig, ScoreConfig,
    default_eval_dir, default_model,
)

MC = "Multiple choice"


def col(help: str, panel: str = o.INPUT):
    return Annotated[Optional[str], typer.Option(help=help, rich_help_panel=panel, show_default=False)]


@command("eval")
def evaluate(
    input: Annotated[str, typer.Argument(help="Preference pairs (prompt, chosen, rejected) or multiple-choice rows "
                                              "(question + mc1_targets, or question + choices + labels): JSONL, "
                                              "Parquet, save_to_disk folder or Hub dataset.", show_default=False)],
    model: o.ModelOpt = default_model(),
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Folder for eval.json and margins.png. "
                                                  "Default: rmscore-eval/<input>-<model>.", rich_help_panel=o.OUT,
                                                  show_default=False)] = None,
    cache_dir: Annotated[Optional[str], typer.Option(help="Score cache (an ordinary `rmscore score` output): a new "
                                                          "or empty folder, or an earlier eval cache; a folder "
                                                          "holding anything else is refused. Default: "
                                                          "OUTPUT/scores.", rich_help_panel=o.OUT,
                                                     show_default=False)] = None,
    rescore: Annotated[bool, typer.Option(help="Score again even if the cache matches.", rich_help_panel=o.OUT)]
    = False,
    task: Annotated[str, typer.Option(help="auto (from the columns), pairs or mc.")] = "auto",
    score_column: Annotated[str, typer.Option(help="Score to compare: score, or one objective of a multi-objective "
                                                   "model (an ArmoRM objective name such as helpsteer-correctness, "
                                                   "or rewards[i]). Read from the cache: never rescores.")]
    = "score",
    subset_column: Annotated[Optional[str], typer.Option(help="Input column to break accuracy down by (read from "
                                                              "the input: changing it never rescores).",
                                                         rich_help_panel=o.INPUT)] = None,
    split: o.SplitOpt = "train",
    config: Annotated[Optional[str], typer.Option(help="Hub dataset configuration.", rich_help_panel=o.INPUT)] = None,
    prompt_col: col("Pairs: prompt column (default prompt).") = None,
    chosen_col: col("Pairs: chosen column (default chosen).") = None,
    rejected_col: col("Pairs: rejected column (default rejected).") = None,
    id_col: col("Pairs: prompt id column (default: a hash of the prompt).") = None,
    json_columns: o.JsonColumnsOpt = None,
    question_col: col("Multiple choice: question column (default question, else prompt).", MC) = None,
    targets_col: col("Multiple choice: column of {choices, labels} (default mc1_targets; mc2_targets "
                     "also works).", MC) = None,
    choices_col: col("Multiple choice: column with the list of choices (default choices).", MC) = None,
    labels_col: col("Multiple choice: column with one 0/1 label per choice (default labels).", MC) = None,
    shuffle_seed: Annotated[int, typer.Option(help="Seed of the choice shuffle done before scoring.",
                                              rich_help_panel=MC)] = 0,
    limit: o.LimitOpt = None,
    model_type: o.ModelTypeOpt = "auto",
    revision: o.RevisionOpt = None,
    dtype: o.DtypeOpt = "auto",
    device: o.DeviceOpt = "auto",
    device_map: o.DeviceMapOpt = None,
    attn_implementation: o.AttnOpt = None,
    trust_remote_code: o.TrustOpt = False,
    allow_pickle: o.PickleOpt = False,
    chat_template: o.TemplateOpt = None,
    system_prompt: o.SystemOpt = None,
    bos: o.BosOpt = None,
    judge_template: o.JudgeTemplateOpt = None,
    score_tokens: o.ScoreTokensOpt = None,
    gguf_file: o.GgufOpt = None,
    judge_url: o.JudgeUrlOpt = None,
    judge_model: o.JudgeModelOpt = None,
    judge_api_key_env: o.JudgeKeyEnvOpt = None,
    judge_mode: o.JudgeModeOpt = "pointwise",
    verdict_pattern: o.VerdictPatternOpt = None,
    judge_temperature: o.JudgeTemperatureOpt = 0.0,
    judge_seed: o.JudgeSeedOpt = None,
    judge_max_tokens: o.JudgeMaxTokensOpt = 1024,
    judge_timeout: o.JudgeTimeoutOpt = 120.0,
    judge_retries: o.JudgeRetriesOpt = 6,
    concurrency: o.ConcurrencyOpt = 8,
    max_length: o.MaxLengthOpt = None,
    on_overflow: o.OverflowOpt = "skip",
    max_tokens_per_batch: o.TokenBudgetOpt = None,
    max_batch_size: o.BatchSizeOpt = 512,
    window: o.WindowOpt = 8192,
    batch_invariant: o.BatchInvariantOpt = False,
    progress: o.ProgressOpt = None,
):
    """How often the reward model prefers the right answer.

    Preference pairs: pairwise accuracy (chosen scored above rejected; ties count one half), the
    margin distribution, and a breakdown by --subset-column. Multiple choice: each choice is
    scored as a completion of the question (choices shuffled first); top-1 accuracy (ties shared
    evenly) against the chance level.

    Scores are cached in an ordinary `rmscore score` folder and reused while the data, model and
    scoring settings stay the same, compared by content (every input file, the model's files, a
    --chat-template file), never by the names as typed.

    Examples (from the repository root, on the shipped data, with the shipped demo model):

    \b
      rmscore eval data/truthfulqa_mc_v0.jsonl.gz --limit 100
      rmscore eval data/demo/hh_rlhf_heldout.jsonl.gz -m data/demo-rm

    With a Hub model (downloads it):

    \b
      rmscore eval data/truthfulqa_mc_v0.jsonl.gz -m Skywork/Skywork-Reward-V2-Qwen3-0.6B
      rmscore eval allenai/reward-bench --split filtered -m Skywork/Skywork-Reward-V2-Qwen3-0.6B --subset-column subset
    """
    params = dict(locals())  # the options as given, before anything else is defined
    from rmscore.evaluate.run import run_eval

    output = output or default_eval_dir(input, model)
    score_cfg = ScoreConfig(
        input=InputConfig(input, split, config, ColumnMap(prompt=prompt_col, chosen=chosen_col, rejected=rejected_col,
                                                          id=id_col), limit=limit,
                          json_columns=o.split_list(json_columns)),
        output=OutputConfig(cache_dir or f"{output}/scores"),
        model=o.model_config(params),
        batch=BatchConfig(max_length, on_overflow, max_tokens_per_batch, max_batch_size, window,
                          batch_invariant=batch_invariant),
        progress=progress,
    )
    cfg = EvalConfig(score_cfg, output, task, subset_column,
                     McColumns(question_col, targets_col, choices_col, labels_col, shuffle_seed), rescore, score_column)
    report = run_eval(cfg, log=lambda text: echo(f"[rmscore] {text}"))
    for line in summary(report):
        typer.echo(line)


def summary(r: dict) -> list[str]:
    where = f"{r['input'].rstrip('/').split('/')[-1]}, model {r['model']}"
    if r["task"] == "pairs":
        m = r["margin"]
        lines = [f"Pairwise accuracy on {r['pairs']:,} pairs ({where}): {100 * r['accuracy']:.1f}%  "
                 f"(ties {100 * r['ties']:.1f}%, counted as half)",
                 f"  margin chosen - rejected: mean {m['mean']:.3f}, median {m['median']:.3f}, "
                 f"p5 {m['p5']:.3f}, p95 {m['p95']:.3f}"]
    else:
        lines = [f"Multiple choice on {r['questions']:,} questions ({where}): top-1 accuracy "
                 f"{100 * r['top1_accuracy']:.1f}%  (chance {100 * r['chance']:.1f}%)"]
    if "subsets" in r:
        width = max(len(name) for name in r["subsets"]) + 2
        lines.append(f"  {'subset':<{width}}{'count':>8}{'accuracy':>10}")
        for name, s in r["subsets"].items():
            lines.append(f"  {name:<{width}}{s['count']:>8,}{100 * s['accuracy']:>9.1f}%")
    for reason, count in r["skipped"].items():
        lines.append(f"  left out: {count:,} {reason}")
    files = " and ".join(r["files"].values())
    lines.append(f"wrote {files} (scores cached in {r['scores']})")
    return lines
