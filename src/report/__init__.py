"""A run's self-contained HTML report: the offline counterpart of the ClearML web UI."""
