"""The Python API: rmscore.Scorer (score rows in memory) and rmscore.RewardFunction (a reward
function for TRL's online trainers, in process or through `rmscore serve`).

  options.py  keyword options -> the typed configs of `rmscore score`
  local.py    Scorer: a model loaded once in this process (rmscore.score.engine.Engine underneath)
  client.py   a client of `rmscore serve` (POST /v1/score): retries, timeout, API key
  reward.py   RewardFunction / AsyncRewardFunction: TRL's prompts and completions in, floats out

Import them from `rmscore` itself; this package is loaded on first use, so `import rmscore` stays cheap.
"""

from rmscore.api.local import Scorer
from rmscore.api.reward import AsyncRewardFunction, RewardFunction

__all__ = ["Scorer", "RewardFunction", "AsyncRewardFunction"]
