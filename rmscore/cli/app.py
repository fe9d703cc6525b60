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


# Arrow's allocator for the commands (issue 28). Arrow's default, mimalloc, keeps much of what a
# long pass churned, so the peak grew with the rows: merge peaked 327 MiB at 100k rows and 355 at
# 1M. jemalloc that hands freed pages back after half a second peaked 242 and 243 (merge's 1M rows
# took 10.9 s instead of 8.9: returning pages costs system time); docs/benchmarks.md.
ARROW_POOL = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc", "JE_ARROW_MALLOC_CONF": "dirty_decay_ms:500,muzzy_decay_ms:0"}


def _arrow_memory() -> None:
    """Choose Arrow's allocator before pyarrow loads (it reads these once, on import), unless the
    user chose one. Linux only: pyarrow's Linux wheels carry jemalloc; elsewhere Arrow would warn
    that it has none and keep its default. A per-process choice: only the CLI makes it."""
    if sys.platform.startswith("linux") and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ \
            and "pyarrow" not in sys.modules:
        os.environ.update(ARROW_POOL)


def main() -> None:
    if debug():
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
    else:
        # Library warnings are not for the user of a CLI; our own messages say what matters.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _arrow_memory()
    sys.exit(app())
