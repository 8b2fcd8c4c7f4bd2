"""The explicit training loop, its schedules, checkpoints and monitors."""
