"""One trial of a local sweep: the train step's own machinery on one sampled config, pruned by the
median rule.

The trainer is not changed for the search: ``PruningTracker`` wraps the trial's tracker, receives
the validation scalars the trainer already logs (title ``valid``), reports the chosen metric to the
optuna trial at each evaluation and raises ``optuna.TrialPruned`` when ``trial.should_prune()``,
which ends ``Trainer.fit`` at that evaluation.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from src.config import config_to_dict
from src.experiment import ExperimentConfig
from src.tuning.space import SearchSpace, apply_params

MAXIMIZED = ("accuracy", "bleu", "chrf", "f1", "macro_f1")  # every other validation metric is minimised


def direction_of(metric: str) -> str:
    """``"maximize"`` for accuracy-like metrics, ``"minimize"`` for losses and perplexities."""
    return "maximize" if metric in MAXIMIZED else "minimize"


class PruningTracker:
    """A tracker that also reports ``valid/<metric>`` to an optuna trial and stops a bad trial early.

    Args:
        tracker: the trial's own tracker (a ClearML task, or ``NullTracker``); everything is passed on.
        trial: the ``optuna.Trial`` being run.
        metric: the validation series the search optimises (``loss``, ``accuracy``, ...).
    """

    def __init__(self, tracker: Any, trial: Any, metric: str) -> None:
        self._tracker, self.trial, self.metric = tracker, trial, metric
        self.steps = 0  # the last training step anything was logged at
        self.reported: list[tuple[int, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def log_scalar(self, title: str, series: str, value: float, step: int) -> None:
        self.steps = max(self.steps, int(step))
        self._tracker.log_scalar(title, series, value, step)
        if title == "valid" and series == self.metric:
            self._report(float(value), int(step))

    def log_scalars(self, title: str, values: dict[str, float], step: int) -> None:
        self.steps = max(self.steps, int(step))
        self._tracker.log_scalars(title, values, step)
        if title == "valid" and self.metric in values:
            self._report(float(values[self.metric]), int(step))

    def _report(self, value: float, step: int) -> None:
        import optuna

        self.reported.append((step, value))
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"valid {self.metric} {value:.4f} at step {step} is worse than the "
                                     "median of earlier trials at that step")

    def best(self, direction: str) -> float:
        """The best reported value (the trial's objective); ValueError if it never validated."""
        if not self.reported:
            raise ValueError(f"the trial logged no valid/{self.metric} (expected a validation metric of the "
                             "task; check --metric)")
        values = [value for _, value in self.reported]
        return max(values) if direction == "maximize" else min(values)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one sweep shares."""

    base: ExperimentConfig
    space: SearchSpace
    study: str
    sweep_dir: Path
    metric: str
    direction: str
    offline: bool | None


def prepare_data(cfg: ExperimentConfig, work: Path) -> dict[str, Any]:
    """The data prep and tokenize steps for ``cfg`` (untracked), done once per task/data/tokenizer config.

    Returns the tokenize step's output, as the train step receives it. A later sweep over the same
    data (or a trial whose searched keys leave these sections alone) reuses the folder.
    """
    from src.tasks import TASKS, StepContext
    from src.tracking import NullTracker

    key = json.dumps([cfg.task, config_to_dict(cfg.data), config_to_dict(cfg.tokenizer)], sort_keys=True)
    out = work / hashlib.sha1(key.encode()).hexdigest()[:12]
    done = out / "tokenized.json"
    if done.is_file():
        logger.info(f"sweep: prepared data reused from {out}")
        return json.loads(done.read_text(encoding="utf-8"))
    steps = TASKS[cfg.task]
    data = steps.data_prep(StepContext("data_prep", cfg, out, NullTracker(output_dir=out / "data_prep")))
    tokenized = steps.tokenize(StepContext("tokenize", cfg, out, NullTracker(output_dir=out / "tokenize")),
                               data)
    done.write_text(json.dumps(tokenized, indent=2), encoding="utf-8")
    return tokenized


def trial_config(settings: TrialSettings, params: dict[str, Any], number: int) -> ExperimentConfig:
    """The base config with the trial's values; trials train exactly ``training.max_steps`` steps
    (no wall-clock cap: trials sharing a machine are compared at equal steps, as the pruner does)."""
    return apply_params(settings.base, params, training={"max_minutes": None},
                        tracking={"task_name": f"{settings.study}-trial-{number:03d}"})


def run_trial(trial: Any, settings: TrialSettings) -> float:
    """Train one sampled config as its own task in ``<project>/sweep-<study>``; return its objective.

    The trial's attributes record what the trials table shows: steps reached, seconds, task id and
    offline session. A pruned trial's task is closed normally with a line saying why it stopped.
    """
    import optuna

    from src.orchestration import start_sweep_tracker
    from src.tasks import TASKS, StepContext

    params = settings.space.suggest(trial)
    cfg = trial_config(settings, params, trial.number)
    tokenized = prepare_data(cfg, settings.sweep_dir / "data")
    trial_dir = settings.sweep_dir / f"trial_{trial.number:03d}"
    tracker = start_sweep_tracker(cfg.tracking, study=settings.study, task_name=cfg.tracking.task_name,
                                  task_type="training", output_dir=trial_dir, offline=settings.offline)
    tracker.connect_config(config_to_dict(cfg), name="config")
    tracker.connect_config({key.replace(".", "/"): value for key, value in params.items()}, name="trial")
    pruning = PruningTracker(tracker, trial, settings.metric)
    trial.set_user_attr("task_id", tracker.task_id)
    logger.info(f"sweep {settings.study}: trial {trial.number} {params}")
    start = time.perf_counter()
    try:
        TASKS[cfg.task].train(StepContext("train", cfg, trial_dir, pruning), tokenized, False)
        value = pruning.best(settings.direction)
        tracker.log_single_value(f"sweep objective (valid {settings.metric})", value)
        session = tracker.close()
    except optuna.TrialPruned as pruned:
        tracker.log_text(f"trial {trial.number} pruned: {pruned}", console=False)  # optuna logs it here
        session = tracker.close()
        _record(trial, pruning.steps, start, session)
        raise
    # a failure, or a stop request: the task is closed (zipped offline) either way
    except BaseException as err:
        session = tracker.close(failed=True, reason=f"{type(err).__name__}: {err}")
        _record(trial, pruning.steps, start, session)
        raise
    _record(trial, pruning.steps, start, session)
    return value


def _record(trial: Any, steps: int, start: float, session: Path | None) -> None:
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("duration_s", round(time.perf_counter() - start, 2))
    trial.set_user_attr("session", str(session) if session else None)
