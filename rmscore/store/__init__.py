"""Storing runs: the output folder, Parquet parts, resume state, locks, input identity and merge."""
