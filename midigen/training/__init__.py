"""Training: the one loop every model family uses, checkpoints, DDP, MLflow tracking."""
