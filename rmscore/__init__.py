"""rmscore: score LLM completions with reward models and build preference pairs.

The Python API, beside the `rmscore` command:

    import rmscore

    scorer = rmscore.Scorer("Skywork/Skywork-Reward-V2-Llama-3.1-8B")   # loads once
    scorer.score([{"prompt": "2+2?", "completion": "4"}])                # one dict per completion

    reward = rmscore.RewardFunction("Skywork/Skywork-Reward-V2-Llama-3.1-8B")   # for TRL's GRPOTrainer
    reward = rmscore.RewardFunction(url="http://127.0.0.1:8000")                 # a running rmscore serve

On a Ray cluster, rmscore.ray.score_dataset(ds, model=...) scores a ray.data.Dataset (extra
`rmscore[ray]`; docs/ray.md).

Errors are exceptions: RmscoreError and its subclasses below (each with a `hint` saying how to fix it).

Importing this package must stay cheap (no torch, no transformers) so `rmscore --help` is fast:
the API classes load on first access.
"""

from rmscore.errors import ConfigError, InputError, ModelError, ResumeConflict, RmscoreError, ServerError

__version__ = "0.1.0"

# Public name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Scorer": "rmscore.api.local",
    "RewardFunction": "rmscore.api.reward",
    "AsyncRewardFunction": "rmscore.api.reward",
}

__all__ = [
    "Scorer", "RewardFunction", "AsyncRewardFunction",
    "RmscoreError", "InputError", "ModelError", "ConfigError", "ServerError", "ResumeConflict",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'rmscore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
