"""Step 3: train the model; the best checkpoint becomes an output model of this task."""

from typing import Any

from src.steps.context import ConfigLike, for_task, tracked_step


def run(config: ConfigLike, tokenized: dict[str, Any], *, resume: bool = False,
        offline: bool | None = None) -> dict[str, Any]:
    with tracked_step("train", config, "training", offline=offline) as step:
        return for_task(step.cfg).train(step, tokenized, resume)
