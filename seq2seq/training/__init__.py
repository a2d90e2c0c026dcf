"""The training loop and what it needs: schedules, metrics, resume, signals, the run directory, DDP, shards."""
