"""Command-line interface. One module per command; each registers itself on the shared app."""

from rmscore.cli.app import app, main
from rmscore.cli import bestofn, evaluate, models, score  # noqa: F401,E402  (registration side effects)

__all__ = ["app", "main"]
