"""`rmscore score`: one command from a dataset to a Parquet folder of scores."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.errors import ConfigError
from rmscore.config import (
    BatchConfig, ColumnMap, InputConfig, OutputConfig, RayConfig, ScoreConfig, ShardConfig, default_model,
)

Col = Annotated[Optional[str], typer.Option(rich_help_panel=o.INPUT, show_default=False)]


@command("score")
def score(
    input: Annotated[str, typer.Argument(help="JSONL (.jsonl), JSON (.json: an array or JSON lines), CSV/TSV "
                                              "(list columns as JSON), each also .gz; a Parquet file or "
                                              "folder, a save_to_disk folder, or a Hub dataset name.",
                                         show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder of Parquet parts.",
                                        rich_help_panel=o.OUT, show_default=False)],
    model: o.ModelOpt = default_model(),
    model_type: o.ModelTypeOpt = "auto",
    revision: o.RevisionOpt = None,
    split: o.SplitOpt = "train",
    config: Annotated[Optional[str], typer.Option(help="Hub dataset configuration.", rich_help_panel=o.INPUT)] = None,
    prompt_col: Col = None,
    completion_col: Col = None,
    completions_col: Col = None,
    messages_col: Col = None,
    chosen_col: Col = None,
    rejected_col: Col = None,
    steps_col: Annotated[Optional[str], typer.Option(help="Column with each completion's steps (a list of strings), "
                                                          "for process reward models. Default: 'steps' if present; "
                                                          "'' ignores it.", rich_help_panel=o.INPUT)] = None,
    id_col: Annotated[Optional[str], typer.Option(help="Column with the prompt id. Default: a hash of the prompt, "
                                                       "stable across runs.", rich_help_panel=o.INPUT)] = None,
    keep_columns: Annotated[Optional[str], typer.Option(help="Comma-separated input columns copied to the output.",
                                                        rich_help_panel=o.INPUT)] = None,
    json_columns: o.JsonColumnsOpt = None,
    limit: o.LimitOpt = None,
    max_length: o.MaxLengthOpt = None,
    on_overflow: o.OverflowOpt = "skip",
    max_tokens_per_batch: o.TokenBudgetOpt = None,
    max_batch_size: o.BatchSizeOpt = 512,
    window: o.WindowOpt = 8192,
    forward: Annotated[str, typer.Option(
        help="auto: prompt reuse where completions share a prompt (>= 15% tokens saved), packed rows on "
             "flash-attention/flex backends, sorted padded batches otherwise. Or force padded, packed, "
             "prompt-reuse. All give the batch-size-1 numbers.", rich_help_panel=o.BATCH)] = "auto",
    batch_invariant: o.BatchInvariantOpt = False,
    dtype: o.DtypeOpt = "auto",
    device: o.DeviceOpt = "auto",
    device_map: o.DeviceMapOpt = None,
    attn_implementation: o.AttnOpt = None,
    trust_remote_code: o.TrustOpt = False,
    allow_pickle: o.PickleOpt = False,
    chat_template: o.TemplateOpt = None,
    system_prompt: o.SystemOpt = None,
    bos: o.BosOpt = None,
    step_separator: o.StepSepOpt = None,
    aggregate: o.AggregateOpt = "min",
    step_tokens: o.StepTokensOpt = None,
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
    shard: Annotated[Optional[str], typer.Option(help="INDEX/COUNT: score one slice (all completions of a prompt stay "
                                                      "together). Default: the SLURM array task, else 0/1; srun "
                                                      "tasks and torchrun workers split it further.",
                                                 rich_help_panel=o.OUT)] = None,
    overwrite: Annotated[bool, typer.Option(help="Start this shard again, deleting its rows (never another "
                                                 "shard's). Without it a rerun resumes, and refuses if the settings "
                                                 "changed. Ignored after a SLURM requeue.",
                                            rich_help_panel=o.OUT)] = False,
    rows_per_part: Annotated[int, typer.Option(help="Rows per Parquet part file. A finished part survives any kill.",
                                               rich_help_panel=o.OUT)] = 50_000,
    part_minutes: Annotated[float, typer.Option(help="Also finish a part after this many minutes, so a SIGKILL or "
                                                     "a node failure loses at most that much work.",
                                                rich_help_panel=o.OUT)] = 10.0,
    progress: o.ProgressOpt = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="Score on a Ray cluster: local (start Ray on this machine), auto (the "
        "cluster `ray start` or RAY_ADDRESS names) or ray://HEAD:10001. This process still reads the input and "
        "writes every part; a rerun resumes, with or without --ray.", rich_help_panel=o.RAY)] = None,
    ray_actors: Annotated[Optional[int], typer.Option(
        help="Ray actors, each loading the model once. Default: one per GPU of the cluster; 1 without GPUs.",
        rich_help_panel=o.RAY, show_default=False)] = None,
    ray_gpus_per_actor: Annotated[Optional[float], typer.Option(
        help="GPUs per actor (2 with --device-map auto for a model on two GPUs). Default: 1 on a cluster with "
             "GPUs, else 0.", rich_help_panel=o.RAY, show_default=False)] = None,
):
    """Score every completion of INPUT with a reward model and write Parquet.

    Each row's shape comes from its own fields: prompt+completion, prompt+completions (a list),
    messages (last turn is the assistant's), [prompt+]chosen+rejected, or prompt+steps. Prompts
    may be text or {role, content} message lists; a string is always text (see --json-columns).

    Interrupted (SIGTERM/SIGUSR1 save and exit 75; even SIGKILL)? Rerun the same command: it
    skips the rows already saved. Several GPUs: torchrun --nproc-per-node N -m rmscore score ...;
    SLURM arrays shard by themselves. See recipes/. On a Ray cluster (Kubernetes, cloud):
    --ray auto (docs/ray.md).

    Examples (from the repository root, on the shipped data, with the shipped demo model):

    \b
      rmscore score data/demo/hh_rlhf_demo.jsonl -o scored/
      rmscore score data/demo/hh_rlhf_heldout.jsonl.gz -o demo-out/heldout-scored --limit 100 --keep-columns id
      rmscore score data/demo/hh_rlhf_demo.jsonl -o demo-out/ray-scored --limit 40 --ray local --ray-actors 2

    With a Hub model (downloads it):

    \b
      rmscore score data/demo/hh_rlhf_demo.jsonl -m Skywork/Skywork-Reward-V2-Llama-3.1-8B -o skywork-scored/
      rmscore score data/prm800k_phase1_test_trajectories.jsonl.gz -m Qwen/Qwen2.5-Math-PRM-7B --prompt-col problem -o prm-scored/
      rmscore score data/demo/hh_rlhf_demo.jsonl -m HuggingFaceTB/SmolLM2-135M-Instruct --model-type lm-judge -o judged/
      rmscore score data/demo/hh_rlhf_demo.jsonl -m Qwen/Qwen2.5-1.5B-Instruct --model-type genrm --judge-max-tokens 512 --limit 20 -o genrm-judged/

    A generative judge on a server (vllm serve, SGLang, a hosted API): --judge-url URL --judge-model
    NAME; it writes a critique, then a verdict (docs/genrm.md).
    """
    params = dict(locals())  # the options as given, before anything else is defined
    from rmscore.score.run import run_score

    cfg = ScoreConfig(
        input=InputConfig(
            input, split, config,
            ColumnMap(prompt_col, completion_col, completions_col, messages_col, chosen_col, rejected_col,
                      steps_col, id_col),
            o.split_list(keep_columns), limit, o.split_list(json_columns),
        ),
        output=OutputConfig(output, overwrite, rows_per_part, part_minutes),
        model=o.model_config({**params, "step_separator": o.unescape(step_separator)}),
        batch=BatchConfig(max_length, on_overflow, max_tokens_per_batch, max_batch_size, window, forward,
                          batch_invariant),
        shard=ShardConfig.parse(shard),
        progress=progress,
        ray=None if ray is None else RayConfig(ray, ray_actors, ray_gpus_per_actor),
    )
    if ray is None and (ray_actors is not None or ray_gpus_per_actor is not None):
        raise ConfigError("--ray-actors and --ray-gpus-per-actor apply to --ray",
                          "add --ray local (or auto), or drop them")
    summary = run_score(cfg, log=lambda text: echo(f"[rmscore] {text}"))
    for line in [] if summary.quiet else summary_lines(summary):
        echo(line)
    summary.raise_for_damage()  # after the summary: the rows read are saved, the run still failed


def summary_lines(s) -> list[str]:
    if s.complete:
        which = f"All {s.workers} shards of this task were" if s.workers > 1 else f"Shard {s.shard} was"
        return [f"{which} already complete ({s.saved:,} rows); nothing to do.", f"  output: {s.output}"]
    scored = sum(n for status, n in s.statuses.items() if status in ("ok", "truncated"))
    lines = [
        f"Scored {scored:,} of {s.samples:,} completions from {s.rows_read:,} input rows "
        f"in {s.wall_s:.1f}s with {s.model_type}.",
        f"  forward: {s.forward_path}; {s.batches:,} batches, padding efficiency {s.padding_efficiency:.1%}",
        f"  tokens: {s.tokens:,} scored ({s.tokens / max(s.loop_s, 1e-9):,.0f}/s after loading)",
    ]
    if s.tokens_saved:
        lines.append(f"  prompt reuse: {s.tokens_saved:,} prompt tokens not recomputed "
                     f"({s.tokens_saved / max(s.tokens, 1):.1%})")
    for name, n in sorted(s.counts.items()):
        lines.append(f"  {name.replace('_', ' ')}: {n:,}")
    if s.oom_retries:
        lines.append(f"  out-of-memory: {s.oom_retries} retries; token budget now {s.token_budget:,}")
    if s.shapes:
        lines.append("  input rows by shape: " + ", ".join(f"{shape} {n:,}" for shape, n in s.shapes.most_common()))
    for status, n in sorted(s.statuses.items()):
        if status != "ok":
            lines.append(f"  {status}: {n:,}")
    for reason, n in s.details.most_common(10):
        lines.append(f"    {n:,} x {reason}")
    if s.skipped:
        lines.append(f"  resumed: {s.skipped:,} completions scored by an earlier run were skipped")
    if s.failed_workers:
        lines.append(f"  {s.failed_workers} more workers stopped with an error (see above): their rows are not "
                     "counted here; rerun the same command to finish their shards")
    if s.complete_shards:
        lines.append(f"  {s.complete_shards} of {s.workers} workers' shards were already complete: their rows are "
                     "not counted above")
    where = f"{s.workers} data-parallel workers, counts summed" if s.workers > 1 else f"shard {s.shard}"
    lines.append(f"  output: {s.output} ({where}; {s.saved:,} rows in finished parts)")
    return lines
