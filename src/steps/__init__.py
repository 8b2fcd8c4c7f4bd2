"""The pipeline's steps: data prep, tokenization, train, evaluate, register.

``STEPS`` (``table.py``) is the pipeline's one table: each entry holds the step's function, name,
ClearML task type, inputs and cache rule. ``run_step`` (``runner.py``) is the one way to run one: it
opens the step's tracked task, calls the function (which calls the configured task's body,
``src/tasks/<task>/steps.py``), uploads what a reviewer needs and returns a small dict of ids and
paths that the next steps take. The ClearML ``PipelineController`` (``pipelines/pipeline.py``) and
the in-process runner (``pipelines/in_process.py``) both iterate ``STEPS``.
"""

from src.steps.runner import as_config, run_pipeline_step, run_step, tracked_step
from src.steps.table import STEP, STEPS, StepSpec, train_worker

__all__ = ["STEP", "STEPS", "StepSpec", "as_config", "run_pipeline_step", "run_step", "tracked_step",
           "train_worker"]
