"""Clusters: the only reader of SLURM, torchrun and accelerate variables; shards, process groups, stop signals, completion markers."""
