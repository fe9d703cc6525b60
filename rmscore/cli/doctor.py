"""`rmscore doctor`: check a model scores the same batched as alone, and matches its card."""

from __future__ import annotations

from typing import Annotated

import typer

from rmscore.cli import options as o
from rmscore.cli.app import command, echo
from rmscore.config import default_model


@command("doctor")
def doctor(
    model: o.ModelOpt = default_model(),
    model_type: o.ModelTypeOpt = "auto",
    revision: o.RevisionOpt = None,
    dtype: o.DtypeOpt = "auto",
    device: o.DeviceOpt = "auto",
    attn_implementation: o.AttnOpt = None,
    trust_remote_code: o.TrustOpt = False,
    allow_pickle: o.PickleOpt = False,
    chat_template: o.TemplateOpt = None,
    system_prompt: o.SystemOpt = None,
    bos: o.BosOpt = None,
    judge_template: o.JudgeTemplateOpt = None,
    score_tokens: o.ScoreTokensOpt = None,
    gguf_file: o.GgufOpt = None,
    batch_invariant: Annotated[bool, typer.Option(
        help="Also check --batch-invariant here: the probes scored alone and under several batch sizes, budgets "
             "and orders must give the very same bits.")] = False,
):
    """Score built-in probes one per forward and batched, report the largest difference, and check
    the model card's published numbers when MODEL is one of those checkpoints. Exit 1 on failure.

    Examples (from the repository root; the first checks the shipped demo model):

    \b
      rmscore doctor
      rmscore doctor -m data/demo-rm --model-type seq-cls --dtype float32
      rmscore doctor --batch-invariant

    With a Hub model (downloads it):

    \b
      rmscore doctor -m RLHFlow/ArmoRM-Llama3-8B-v0.1
      rmscore doctor -m HuggingFaceTB/SmolLM2-135M-Instruct --model-type lm-judge --score-tokens 'Yes No'
    """
    from rmscore.doctor.checks import NOISE_FACTOR, run_doctor

    cfg = o.model_config(locals())
    report = run_doctor(cfg, log=lambda text: echo(f"[rmscore] {text}"), batch_invariant=batch_invariant)
    rtol, atol = report.tolerance
    verdict = "PASS" if report.batching_ok else "FAIL"
    typer.echo(f"batching: {verdict}: {report.probes} probes scored one per forward and batched "
               f"({', '.join(report.paths)}); largest difference {report.max_diff:.3g}"
               + (f" ({report.worst})" if report.worst else "")
               + f"; tolerance {atol:g} + {rtol:g}*|x| + {NOISE_FACTOR} x kernel noise {report.noise:.2g}"
               f" for {report.dtype}")
    for line in report.problems + report.notes:
        typer.echo(f"  {line}")
    typer.echo(f"golden check: {report.golden}")
    if report.invariance is not None:
        for line in invariance_lines(report.invariance, report.dtype):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


def invariance_lines(inv, dtype: str) -> list[str]:
    verdict = "PASS" if inv.ok else "FAIL"
    lines = [f"batch invariance: {verdict}: {inv.compared} numbers compared bit for bit, alone vs {inv.batchings} "
             f"batchings (batch sizes, budgets, shuffled orders); --batch-invariant moves scores by at most "
             f"{inv.max_diff:.3g} from the default batch-size-1 ones (without it, {inv.default_differ} of "
             f"{inv.compared} numbers differ from batch size 1 under the same batchings)",
             f"  holds on this machine, with these library versions, in {dtype}; not across CPU kernel levels, "
             "and on a GPU only where this check passed"]
    return lines + [f"  {m}" for m in inv.mismatches[:10]]
