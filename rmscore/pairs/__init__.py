"""Training data from scores: chosen/rejected pairs per prompt and the formats trainers load."""
