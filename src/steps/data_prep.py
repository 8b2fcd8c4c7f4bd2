"""Step 1: read the raw parallel text, clean, split, and save the dataset with its data card."""

from typing import Any

from src.steps.context import ConfigLike, tracked_step


def run(config: ConfigLike, *, offline: bool | None = None) -> dict[str, Any]:
    from src.data.prepare import check_split_sizes, prepare_corpus

    with tracked_step("data_prep", config, "data_processing", offline=offline) as step:
        out_dir = step.step_dir
        card = prepare_corpus(step.cfg.data, out_dir)
        check_split_sizes(card["counts"], step.cfg.data)  # before anything trains on it
        step.tracker.upload_artifact("data_card", card)
        step.tracker.upload_artifact("dataset", out_dir / "dataset")
        for split, count in card["counts"].items():
            step.tracker.log_scalar("pairs per split", split, count, 0)
        for reason, count in card["dropped"].items():
            step.tracker.log_scalar("dropped rows", reason, count, 0)
        histogram = out_dir / "length_histogram.png"
        if histogram.exists():
            step.tracker.log_image("data card", "length histogram", histogram, 0)
        return {"data_dir": str(out_dir), "task_id": step.tracker.task_id, "counts": card["counts"]}
