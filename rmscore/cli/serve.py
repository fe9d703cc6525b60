"""`rmscore serve`: a reward model behind an HTTP endpoint for RL trainers and search loops."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import BatchConfig, ServeConfig, default_model

SERVE = "Serving"


@command("serve")
def serve(
    model: o.ModelOpt = default_model(),
    model_type: o.ModelTypeOpt = "auto",
    revision: o.RevisionOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on. 0.0.0.0 opens it to the network: your choice.",
                                      rich_help_panel=SERVE)] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one; the log says which).",
                                      rich_help_panel=SERVE)] = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="RMSCORE_API_KEY", show_default=False,
                                                   help="Require 'Authorization: Bearer KEY' on every route but "
                                                        "/health.", rich_help_panel=SERVE)] = None,
    max_wait_ms: Annotated[float, typer.Option(help="Once a row waits, wait at most this long for a token budget's "
                                                    "worth of rows before running.", rich_help_panel=SERVE)] = 5.0,
    max_queue: Annotated[int, typer.Option(help="Rows admitted and not yet answered; past it, requests get 503 "
                                                "with Retry-After.", rich_help_panel=SERVE)] = 16384,
    max_rows_per_request: Annotated[int, typer.Option(help="Rows to score in one request; more: 413.",
                                                      rich_help_panel=SERVE)] = 16384,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body; larger: 413.",
                                               rich_help_panel=SERVE)] = 64.0,
    drain_timeout: Annotated[float, typer.Option(
        help="After SIGTERM/SIGINT, seconds to finish the requests in flight; then they get 503 and the exit "
             "code is 2 (a second signal: at once).", rich_help_panel=SERVE)] = 30.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds a request body may take to arrive; slower: 408.",
                                                rich_help_panel=SERVE)] = 30.0,
    query_format: Annotated[str, typer.Option(
        help="/get_reward: text scores each query as the policy rendered it (right when policy and reward "
             "model share a chat template); split cuts it after its prompt and renders prompt + response with "
             "this model's own template.", rich_help_panel=SERVE)] = "text",
    unscored_reward: Annotated[Optional[float], typer.Option(
        help="/get_reward's reward for a row that cannot be scored (too long, invalid). Default: null, with "
             "its status.", rich_help_panel=SERVE, show_default=False)] = None,
    max_length: o.MaxLengthOpt = None,
    on_overflow: o.OverflowOpt = "skip",
    max_tokens_per_batch: o.TokenBudgetOpt = None,
    max_batch_size: o.BatchSizeOpt = 512,
    forward: Annotated[str, typer.Option(help="auto, padded, packed or prompt-reuse, as in score.",
                                         rich_help_panel=o.BATCH)] = "auto",
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
):
    """Serve a reward model over HTTP, with the numbers `rmscore score` gives.

    Routes: POST /v1/score {"rows": [...]} (any row shape score reads); POST /get_reward
    (OpenRLHF --reward.remote_url); POST /classify and /v1/classify (vLLM's API, what verl
    calls); POST /pooling with task token_classify (process reward models, one row per step);
    GET /health, /v1/models, /metrics. Requests from all clients are batched together by tokens.
    One process per GPU: --device cuda:N and its own --port (recipes/serve_all_gpus.sh).

    Examples (the shipped demo model):

    \b
      rmscore serve --port 8000

    Then, from another shell:

    \b
      curl -s localhost:8000/v1/score -H 'Content-Type: application/json' -d '{"rows": [{"prompt": "Hi", "completion": "Hello!"}]}'

    With a Hub model (downloads it):

    \b
      rmscore serve -m Skywork/Skywork-Reward-V2-Llama-3.1-8B --device cuda:0 --port 8000 --api-key secret
    """
    params = dict(locals())  # the options as given, before anything else is defined
    from rmscore.serve import require

    require()
    model_cfg = o.model_config({**params, "step_separator": o.unescape(step_separator)})
    batch_cfg = BatchConfig(max_length, on_overflow, max_tokens_per_batch, max_batch_size, forward=forward,
                            batch_invariant=batch_invariant)
    serve_cfg = ServeConfig(host, port, max_wait_ms, max_queue, max_rows_per_request, max_body_mb, api_key,
                            query_format, unscored_reward, drain_timeout, read_timeout)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        echo(f"[rmscore] warning: listening on {host} without --api-key: anyone who can reach it can use it")
    from rmscore.serve.server import serve as run

    run(model_cfg, batch_cfg, serve_cfg, log=lambda text: echo(f"[rmscore] {text}"))
