"""Step 3: train the model; the best checkpoint becomes an output model of this task.

With ``training.nproc_per_node > 1``, ``training.nodes > 1`` (on ClearML agents) or under
``torchrun`` the step runs data-parallel (``src/training/distributed.py``): this process is rank 0
of its machine and the other ranks run ``worker`` with the same inputs.
"""

from typing import Any

from src.config import config_to_dict
from src.steps.context import ConfigLike, StepContext, as_config, for_task, tracked_step

WORKER = "src.steps.train:worker"


def run(config: ConfigLike, tokenized: dict[str, Any], *, resume: bool = False,
        offline: bool | None = None) -> dict[str, Any]:
    from src.tracking.multi_node import launch_nodes
    from src.training.distributed import data_parallel
    from src.training.distributed import resolve_device

    with tracked_step("train", config, "training", offline=offline) as step:
        tc = step.cfg.training
        launch_nodes(step.tracker, tc.nodes, tc.nproc_per_node)  # on an agent: the other nodes' tasks
        inputs = {"config": config_to_dict(step.cfg), "tokenized": tokenized, "resume": resume,
                  "run_dir": str(step.run_dir)}
        with data_parallel(tc.nproc_per_node, resolve_device(tc.device).type, WORKER, inputs):
            return for_task(step.cfg).train(step, tokenized, resume)


def worker(inputs: dict[str, Any]) -> None:
    """A rank other than 0: the same step body with its own untracked context (rank 0 reports)."""
    from pathlib import Path

    from src.tracking import NullTracker

    cfg = as_config(inputs["config"], source="train step inputs from rank 0")
    step = StepContext("train", cfg, Path(inputs["run_dir"]), NullTracker())
    for_task(cfg).train(step, inputs["tokenized"], inputs["resume"])
