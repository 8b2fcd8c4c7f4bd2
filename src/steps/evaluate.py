"""Step 4: score the best checkpoint on the held-out test split."""

from typing import Any

from src.steps.context import ConfigLike, for_task, tracked_step


def run(config: ConfigLike, tokenized: dict[str, Any], trained: dict[str, Any], *,
        offline: bool | None = None) -> dict[str, Any]:
    with tracked_step("evaluate", config, "testing", offline=offline) as step:
        return for_task(step.cfg).evaluate(step, tokenized, trained)
