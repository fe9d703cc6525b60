"""Command-line interface. One module per command; each registers itself on the shared app.
The import order is the order `rmscore --help` lists them: the workflow's order."""

from rmscore.cli.app import app, main
from rmscore.cli import score, combine, pairs, sft, inspect, evaluate, bestofn, serve, doctor, models, merge  # noqa: F401,E402,I001

__all__ = ["app", "main"]
