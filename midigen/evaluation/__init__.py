"""Evaluation: test-set likelihoods and the musical metrics of generated vs held-out pieces."""
