"""What the tasks' step bodies share: reading the tokenize step's output, training and registering."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src.tasks.spec import StepContext
    from src.tracking import TrackerLike
    from src.training.task import Task


def load_tokenized(tokenized: dict[str, Any]):
    """The tokenize step's encoded splits and tokenizers (``{"src": ..., "tgt": ...}`` or
    ``{"text": ...}``)."""
    from datasets import load_from_disk

    from src.data.tokenizer import load_tokenizer
    from src.tracking import resolve_input

    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    tokenizers = {
        side: load_tokenizer(tok_dir / Path(path).name) for side, path in tokenized["tokenizers"].items()}
    return load_from_disk(str(tok_dir / "encoded")), tokenizers


def record_tokenized(tracker: "TrackerLike", out_dir: Path, tokenizer: Path, report: dict[str, dict]) -> None:
    """What a text task's tokenize step leaves in ClearML: the tokenizer (the file a user downloads alone),
    the report, the whole folder (what later steps fetch) and the report's figures per split as scalars."""
    tracker.upload_artifact("tokenizer", tokenizer)
    tracker.upload_artifact("tokenization_report", report)
    tracker.upload_artifact("tokenized", out_dir)
    for name, stats in report.items():
        tracker.log_scalars(f"tokenization/{name}", stats, 0)


def train_and_register(step: "StepContext", task: "Task", inference: dict[str, Any], resume: bool,
                       extra_metadata=lambda loss: {}) -> dict[str, Any]:
    """The one training loop on ``task``, then the best checkpoint registered as the step's model."""
    from src.training.monitor import parameter_count
    from src.training.trainer import Trainer

    cfg, tracker = step.cfg, step.tracker
    trainer = Trainer(cfg, task, step.step_dir, tracker, inference=inference, resuming=resume)
    tracker.set_properties(parameters=parameter_count(trainer.model))
    if cfg.model.init_from is not None:  # where the weights started: a column of the experiments table
        tracker.set_properties(init_from=cfg.model.init_from)
    if cfg.training.distill_from is not None:  # the teacher of a distilled student, beside it
        tracker.set_properties(distill_from=cfg.training.distill_from)
    if resume:
        trainer.resume()
    result = trainer.fit()
    if not trainer.world.is_main:  # a data-parallel rank other than 0: rank 0 registers the model
        return {"rank": trainer.world.rank, "steps": result.steps, "task_id": tracker.task_id}
    tracker.upload_artifact("train_history", step.step_dir / "train_history.jsonl")
    model_id = tracker.register_model(
        result.best_checkpoint, name=cfg.tracking.model_name, tags=["best-valid", *cfg.tracking.tags],
        config=cfg.model_dump(mode="json"),
        metadata={"valid_loss": result.best_valid_loss, **extra_metadata(result.best_valid_loss),
                  "steps": result.steps},
    )
    return {"checkpoint": str(result.best_checkpoint), "model_id": model_id, "task_id": tracker.task_id,
            "steps": result.steps, "best_valid_loss": result.best_valid_loss}
