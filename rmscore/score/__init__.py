"""Scoring: the run over an input, the in-memory engine, batching, and the forward paths through the model."""
