"""Several reward models over the same rows: one combined score, and where they disagree."""
