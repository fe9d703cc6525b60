"""Command-line interface. One module per command; each registers itself on the shared app."""

from rmscore.cli.app import app, main
from rmscore.cli import bestofn, doctor, evaluate, merge, models, pairs, score  # noqa: F401,E402  (registration)

__all__ = ["app", "main"]
