"""What every step does around its work: config, tracked task, run-folder status, failure marking."""

import json
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from src.config import ExperimentConfig, config_to_dict, validate_config
from src.tracking import TrackerLike

ConfigLike = ExperimentConfig | dict[str, Any] | str


def as_config(config: ConfigLike, source: str = "step parameters") -> ExperimentConfig:
    """Accept a config object, a dict, or a JSON string (how ClearML passes it), and validate it."""
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, str):
        config = json.loads(config)
    return validate_config(config, source=source)


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's ``status.json``; a damaged one raises ``DamagedFileError`` naming it (never silently replaced)."""
    from src.runs.folders import STATUS_FILE, read_json

    return read_json(run_dir / STATUS_FILE) or {"status": "new", "steps": {}}


def update_status(run_dir: Path, step: str, status: str, **details: Any) -> dict[str, Any]:
    """Record a step's state in ``run_dir/status.json`` (written atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_status(run_dir)
    state["steps"].setdefault(step, {}).update({"status": status, "time": time.time(), **details})
    if status in ("failed", "running"):
        state["status"] = status
    elif step == "pipeline" and status == "completed":  # every step done
        state["status"] = "completed"
        state.pop("failed_step", None)  # left by an earlier attempt that --resume completed
        state.pop("reason", None)
    if status == "failed":
        state["failed_step"], state["reason"] = step, details.get("reason", "")
    return _write_status(run_dir, state)


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of ``status.json`` (run id, name, creation time, resumes)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return _write_status(run_dir, read_status(run_dir) | fields)


def _write_status(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    tmp = run_dir / ".status.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(run_dir / "status.json")
    return state


def save_traceback(step_dir: Path, err: BaseException) -> Path:
    """The full traceback of a failed step, kept in its folder (``status.json`` names the file)."""
    step_dir.mkdir(parents=True, exist_ok=True)
    path = step_dir / "traceback.txt"
    path.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
    return path


def for_task(cfg: ExperimentConfig):
    """The module with this task's step bodies: ``src/steps/<task>.py`` (data_prep, tokenize, train,
    evaluate, gate). A new task adds its module here and in ``ExperimentConfig.task``."""
    import importlib

    return importlib.import_module(f"src.steps.{cfg.task}")


@dataclass
class StepContext:
    name: str
    cfg: ExperimentConfig
    run_dir: Path
    tracker: "TrackerLike"

    @property
    def step_dir(self) -> Path:
        path = self.run_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextmanager
def tracked_step(name: str, config: ConfigLike, task_type: str, *, offline: bool | None = None) -> Iterator[StepContext]:
    """Open the step's task, hand back the re-validated config, mark the run folder on failure."""
    from src.tracking import start_tracker

    cfg = as_config(config)
    run_dir = cfg.run_dir
    tracker = start_tracker(cfg.tracking, step_name=name, task_type=task_type, output_dir=run_dir / name,
                            enabled=cfg.tracking.enabled, offline=offline)
    # The UI may have edited the parameters (or an agent passes them as strings): validate again.
    cfg = validate_config(tracker.connect_config(config_to_dict(cfg), name="config"), source=f"{name} parameters")
    update_status(run_dir, name, "running", task_id=tracker.task_id, offline_folder=tracker.offline_folder)
    logger.info(f"step {name}: task {tracker.task_id}")
    context = StepContext(name, cfg, run_dir, tracker)
    try:
        yield context
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        details: dict[str, Any] = {"reason": reason, "task_id": tracker.task_id}
        if not isinstance(err, Exception):  # a stop request (Ctrl-C, SIGTERM) or exit: not the step's fault
            details["stopped"] = True
        else:
            path = save_traceback(context.step_dir, err)
            tracker.log_text(f"step {name} failed:\n{path.read_text(encoding='utf-8')}", console=False)  # the step's ClearML log
            details["traceback"] = str(path)
        try:
            session = tracker.close(failed=True, reason=reason)
        except Exception as close_err:  # keep the step's own error; the session stays in the cache
            logger.warning(f"step {name}: closing its ClearML task failed too ({close_err})")
            session = None
        update_status(run_dir, name, "failed", **details, offline_session=str(session) if session else None)
        raise
    session = tracker.close()
    update_status(run_dir, name, "completed", task_id=tracker.task_id,
                  offline_session=str(session) if session else None)


# --- shared by the tasks' step bodies (src/steps/<task>.py) ------------------------------------------
def load_tokenized(tokenized: dict[str, Any]):
    """The tokenize step's encoded splits and tokenizers (``{"src": ..., "tgt": ...}`` or ``{"text": ...}``)."""
    from datasets import load_from_disk

    from src.data.tokenizer import load_tokenizer
    from src.tracking import resolve_input

    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    tokenizers = {side: load_tokenizer(tok_dir / Path(path).name) for side, path in tokenized["tokenizers"].items()}
    return load_from_disk(str(tok_dir / "encoded")), tokenizers


def train_and_register(step: StepContext, task: Any, inference: dict[str, Any], resume: bool,
                       extra_metadata=lambda loss: {}) -> dict[str, Any]:
    """The one training loop on ``task``, then the best checkpoint registered as the step's model."""
    from src.training.trainer import Trainer

    cfg, tracker = step.cfg, step.tracker
    trainer = Trainer(cfg, task, step.step_dir, tracker, inference=inference)
    if resume:
        trainer.resume()
    result = trainer.fit()
    if not trainer.world.is_main:  # a data-parallel rank other than 0: rank 0 registers the model
        return {"rank": trainer.world.rank, "steps": result.steps, "task_id": tracker.task_id}
    tracker.upload_artifact("train_history", step.step_dir / "train_history.jsonl")
    model_id = tracker.register_model(
        result.best_checkpoint, name=cfg.tracking.model_name, tags=["best-valid", *cfg.tracking.tags],
        config=cfg.model_dump(mode="json"),
        metadata={"valid_loss": result.best_valid_loss, **extra_metadata(result.best_valid_loss), "steps": result.steps},
    )
    return {"checkpoint": str(result.best_checkpoint), "model_id": model_id, "task_id": tracker.task_id,
            "steps": result.steps, "best_valid_loss": result.best_valid_loss}
