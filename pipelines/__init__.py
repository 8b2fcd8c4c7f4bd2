"""The ClearML pipeline: wires the five steps of ``src.steps`` to queues, caching and parameters,
and runs them in this process (``in_process.py``) or through a ``PipelineController`` (``pipeline.py``)."""
