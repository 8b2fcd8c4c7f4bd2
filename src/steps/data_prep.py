"""Step 1: read the raw data, clean, split, and save the dataset with its data card."""

from typing import Any

from src.steps.context import ConfigLike, for_task, tracked_step


def run(config: ConfigLike, *, offline: bool | None = None) -> dict[str, Any]:
    with tracked_step("data_prep", config, "data_processing", offline=offline) as step:
        return for_task(step.cfg).data_prep(step)
