"""rmscore doctor: batched scores against batch size 1 and published golden numbers for a checkpoint."""
