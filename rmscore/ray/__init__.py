"""Ray support (extra `rmscore[ray]`): scoring on a Ray cluster, outside SLURM.

- cluster.py: importing Ray (one-line error without the extra), joining or starting a cluster,
  the defaults taken from its resources, the device an actor scores on.
- pool.py: `rmscore score --ray ADDRESS`: a pool of Ray actors each holding the same Engine as
  `score`; this process still reads the input, keeps the resume state and writes every part.
- data.py: the Ray Data API: RewardScorer, a callable class for Dataset.map_batches, and
  score_dataset(ds, model=..., **options) around it.

Importing this package does not import Ray: that happens when a cluster is joined or a dataset
scored. See docs/ray.md.
"""

from rmscore.ray.data import RewardScorer, score_dataset

__all__ = ["RewardScorer", "score_dataset"]
