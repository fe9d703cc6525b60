"""The Typer app and the CLI's single error boundary.

Only here do exceptions become text: an RmscoreError prints one line saying what went wrong and
how to fix it; anything else prints one line too, unless RMSCORE_DEBUG=1 asks for the traceback.
We use only Typer's public Annotated surface (Typer is pinned), so a later move to plain Click
stays mechanical.
"""

from __future__ import annotations

import functools
import os
import sys

import typer

from rmscore.errors import Interrupted, RmscoreError

app = typer.Typer(
    name="rmscore",
    help="Score LLM completions with reward models and turn the scores into training data: preference pairs, "
         "KTO rows, rejection-sampling SFT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def debug() -> bool:
    return os.environ.get("RMSCORE_DEBUG", "") not in ("", "0")


def fail(message: str, hint: str | None = None, code: int = 2):
    typer.echo(f"Error: {message}", err=True)
    if hint:
        typer.echo(f"  Fix: {hint}", err=True)
    raise typer.Exit(code)


def command(name: str | None = None, **kwargs):
    """@app.command with the error boundary around it."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*args, **kw):
            try:
                return fn(*args, **kw)
            except Interrupted as exc:  # not a failure: finished rows are saved, the job can requeue
                typer.echo(f"Stopped: {exc.message}", err=True)
                typer.echo(f"  Next: {exc.hint}", err=True)
                raise typer.Exit(exc.exit_code)
            except RmscoreError as exc:
                if debug():
                    raise
                fail(exc.message, exc.hint)
            except KeyboardInterrupt:
                typer.echo("Interrupted.", err=True)
                raise typer.Exit(130)
            except (typer.Exit, SystemExit):
                raise
            except Exception as exc:
                if debug():
                    raise
                text = str(exc).splitlines()[0] if str(exc) else ""
                fail(f"unexpected {type(exc).__name__}: {text}", "set RMSCORE_DEBUG=1 to see the traceback", 1)

        return app.command(name, **kwargs)(guarded)

    return register


def echo(text: str = "") -> None:
    typer.echo(text, err=True)


def main() -> None:
    if debug():
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
    else:
        # Library warnings are not for the user of a CLI; our own messages say what matters.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.exit(app())
