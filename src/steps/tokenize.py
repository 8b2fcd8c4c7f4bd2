"""Step 2: train BPE on the training split and encode every split into Arrow."""

from typing import Any

from src.steps.context import ConfigLike, for_task, tracked_step


def run(config: ConfigLike, data: dict[str, Any], *, offline: bool | None = None) -> dict[str, Any]:
    with tracked_step("tokenize", config, "data_processing", offline=offline) as step:
        return for_task(step.cfg).tokenize(step, data)
