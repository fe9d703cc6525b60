"""`rmscore models`: the reward-model families rmscore knows, what each reads and writes."""

from __future__ import annotations

from rmscore.cli.app import command, echo


@command("models")
def models():
    """List the reward-model families (--model-type values) and what each reads and outputs.

    Examples (the second forces a family instead of detecting it):

    \b
      rmscore models
      rmscore doctor --model-type seq-cls
    """
    import typer

    from rmscore.models import ADAPTERS, get_adapter

    for name in ADAPTERS:
        adapter = get_adapter(name)
        typer.echo(f"{name}\n  {adapter.summary}\n  reads:   {adapter.reads}\n  outputs: {adapter.outputs}")
        if adapter.prompts:
            typer.echo(f"  prompt:  {adapter.prompts}")
        if adapter.examples:
            typer.echo(f"  e.g.     {adapter.examples}")
    echo("\n--model-type auto (the default) picks the family from the checkpoint's config.json.")
