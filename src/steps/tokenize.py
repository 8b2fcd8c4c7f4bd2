"""Step 2: train BPE on the training split and encode every split into Arrow."""

from pathlib import Path
from typing import Any

from src.steps.context import ConfigLike, tracked_step


def run(config: ConfigLike, data: dict[str, Any], *, offline: bool | None = None) -> dict[str, Any]:
    from datasets import load_from_disk

    from src.data.tokenizer import encode_corpus, train_tokenizer
    from src.tracking import resolve_input

    with tracked_step("tokenize", config, "data_processing", offline=offline) as step:
        data_dir = resolve_input(data, "data_dir", artifact="dataset", subdir="dataset")
        dataset = load_from_disk(str(data_dir / "dataset" if (data_dir / "dataset").exists() else data_dir))
        out_dir = step.step_dir
        tokenizer_paths = train_tokenizer(dataset, step.cfg.tokenizer, out_dir)
        encoded, report = encode_corpus(dataset, tokenizer_paths, step.cfg.tokenizer, out_dir)
        step.tracker.upload_artifact("tokenizer", Path(tokenizer_paths["tgt"]))  # the file a user downloads alone
        step.tracker.upload_artifact("tokenization_report", report)
        step.tracker.upload_artifact("tokenized", out_dir)  # tokenizer(s) + encoded splits: what later steps fetch
        for split, stats in report.get("splits", {}).items():
            for key, value in stats.items():
                if isinstance(value, (int, float)):
                    step.tracker.log_scalar(f"tokenization/{split}", key, value, 0)
        return {"tokenized_dir": str(out_dir), "task_id": step.tracker.task_id,
                "tokenizers": {k: str(v) for k, v in tokenizer_paths.items()}}
