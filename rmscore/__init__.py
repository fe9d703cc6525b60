"""rmscore: score LLM completions with reward models and build preference pairs.

Importing this package must stay cheap (no torch, no transformers) so `rmscore --help` is fast.
"""

__version__ = "0.1.0"
