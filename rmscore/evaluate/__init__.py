"""Evaluation: pairwise and multiple-choice accuracy, best-of-N curves, plots and the eval cache."""
