"""The ClearML pipeline: wires the five steps of ``src.steps`` to queues, caching and parameters."""
