"""Training data from scores: chosen/rejected pairs (DPO, SimPO, KTO rows) and the best completions
for SFT, per prompt, in the formats trainers load."""
