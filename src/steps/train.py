"""Step 3: train the Transformer; the best checkpoint becomes an output model of this task."""

import math
from pathlib import Path
from typing import Any

from src.steps.context import ConfigLike, tracked_step


def run(config: ConfigLike, tokenized: dict[str, Any], *, resume: bool = False,
        offline: bool | None = None) -> dict[str, Any]:
    from datasets import load_from_disk

    from src.data.tokenizer import load_tokenizer
    from src.inference import inference_fields
    from src.tasks.translation import TranslationTask
    from src.tracking import resolve_input
    from src.training.trainer import Trainer

    with tracked_step("train", config, "training", offline=offline) as step:
        cfg, tracker = step.cfg, step.tracker
        tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
        encoded = load_from_disk(str(tok_dir / "encoded"))
        tokenizers = {side: load_tokenizer(tok_dir / name) for side, name in tokenizer_files(tokenized).items()}
        task = TranslationTask.from_encoded(encoded, tokenizers, cfg.batching.upsample_primary,
                                            cfg.tracking.probe_sentences)
        trainer = Trainer(cfg, task, step.step_dir, tracker, inference=inference_fields(tokenizers, cfg.model.family))
        if resume:
            trainer.resume()
        result = trainer.fit()
        tracker.upload_artifact("train_history", step.step_dir / "train_history.jsonl")
        model_id = tracker.register_model(
            result.best_checkpoint, name=cfg.tracking.model_name, tags=["best-valid", *cfg.tracking.tags],
            config=cfg.model_dump(mode="json"),
            metadata={"valid_loss": result.best_valid_loss, "valid_perplexity": math.exp(min(result.best_valid_loss, 50)),
                      "steps": result.steps},
        )
        return {"checkpoint": str(result.best_checkpoint), "model_id": model_id, "task_id": tracker.task_id,
                "steps": result.steps, "best_valid_loss": result.best_valid_loss}


def tokenizer_files(tokenized: dict[str, Any]) -> dict[str, str]:
    """File names of the src/tgt tokenizers inside the tokenize step's folder (or artifact)."""
    return {side: Path(path).name for side, path in tokenized["tokenizers"].items()}
