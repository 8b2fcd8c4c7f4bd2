"""The local search: an optuna study (TPE sampler, median pruner) stored in sqlite, one task per trial.

Trial 0 of a new study is the base config itself when its values lie in the space, so every
sweep is measured against where it started. The study file lives in the sweep folder; running the
same study again (same ``--study-name`` and ``--output-dir``) adds trials to it. At the end a
parent task in ``<project>/sweep-<study>`` holds the study, the trials table and the best config.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from loguru import logger

from src.config import ConfigError, config_to_dict
from src.tuning.space import apply_params
from src.tuning.trial import TrialSettings, run_trial

STUDY_FILE = "study.db"
TRIALS_CSV, TRIALS_JSON = "trials.csv", "trials.json"
BEST_CONFIG = "best_config.yaml"


@dataclass(frozen=True)
class SweepResult:
    """Where a finished local sweep left its outputs."""

    sweep_dir: Path
    study_file: Path
    trials_csv: Path
    trials_json: Path
    best_config: Path | None
    rows: list[dict[str, Any]]
    parent_session: Path | None


def run_local_sweep(settings: TrialSettings, trials: int, *, seed: int = 0, startup_trials: int = 2,
                    baseline: bool = True) -> SweepResult:
    """Run ``trials`` more trials of the study; write the table and the best config; close the parent task.

    Args:
        settings: the base config, space, study name, folder, metric and its direction.
        trials: how many trials to add (the study may already hold some).
        seed: the TPE sampler's seed (the same seed and space draw the same values).
        startup_trials: the median pruner prunes nothing before this many trials completed.
        baseline: enqueue the base config's values as the study's first trial.
    """
    import optuna

    settings.sweep_dir.mkdir(parents=True, exist_ok=True)
    study_file = settings.sweep_dir / STUDY_FILE
    study = optuna.create_study(
        study_name=settings.study, storage=f"sqlite:///{study_file.resolve()}", load_if_exists=True,
        direction=settings.direction, sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials),
    )
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(f"study {settings.study!r} in {study_file} {study.direction.name.lower()}s, but "
                          f"--metric {settings.metric} asks to {settings.direction} (use another "
                          "--study-name)")
    start_count = len(study.trials)
    base_values = settings.space.base_values(settings.base)
    if baseline and not study.trials and base_values is not None:
        study.enqueue_trial(base_values, user_attrs={"baseline": True})
    elif baseline and not study.trials:
        logger.info(f"sweep {settings.study}: the base config's values lie outside the space; no baseline "
                    "trial")
    logger.info(f"sweep {settings.study}: {trials} trials in {settings.sweep_dir} ({start_count} already in "
                "the study)")
    # one failing trial (a diverging config, say) is recorded as FAIL and the search goes on
    study.optimize(lambda trial: run_trial(trial, settings), n_trials=trials, catch=(Exception,))
    rows = trial_rows(study)
    trials_csv, trials_json = write_trials(rows, settings.sweep_dir)
    best = write_best_config(study, settings)
    session = close_parent(settings, study_file, trials_csv, trials_json, best, rows)
    return SweepResult(settings.sweep_dir, study_file, trials_csv, trials_json, best, rows, session)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, params, steps reached, duration, task and session."""
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
             "steps": t.user_attrs.get("steps"), "duration_s": t.user_attrs.get("duration_s"),
             "baseline": bool(t.user_attrs.get("baseline")), "task_id": t.user_attrs.get("task_id"),
             "session": t.user_attrs.get("session")} for t in study.trials]


def write_trials(rows: list[dict[str, Any]], sweep_dir: Path) -> tuple[Path, Path]:
    """The trials table as JSON (params nested) and CSV (one ``params.<key>`` column per key)."""
    json_path, csv_path = sweep_dir / TRIALS_JSON, sweep_dir / TRIALS_CSV
    json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    keys = sorted({key for row in rows for key in row["params"]})
    fields = ["number", "state", "value", *[f"params.{k}" for k in keys], "steps", "duration_s", "baseline",
              "task_id", "session"]
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: v for k, v in row.items() if k != "params"},
                             **{f"params.{k}": row["params"].get(k) for k in keys}})
    return csv_path, json_path


def write_best_config(study: Any, settings: TrialSettings) -> Path | None:
    """The base config with the best completed trial's values, as YAML for ``train --config``."""
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        logger.warning(f"sweep {settings.study}: no trial completed; no best config written")
        return None
    best = study.best_trial
    cfg = apply_params(settings.base, best.params)
    path = settings.sweep_dir / BEST_CONFIG
    header = (f"# Best trial {best.number} of sweep {settings.study!r}: "
              f"valid {settings.metric} {best.value:.4f}\n"
              f"# searched: {json.dumps(best.params)}\n"
              f"# use: python -m src.main train --config {path}\n")
    path.write_text(header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    logger.info(f"sweep {settings.study}: best trial {best.number} ({settings.metric} {best.value:.4f}) -> "
                f"{path}")
    return path


def close_parent(settings: TrialSettings, study_file: Path, trials_csv: Path, trials_json: Path,
                 best: Path | None, rows: list[dict[str, Any]]) -> Path | None:
    """The sweep's parent task: its settings, the study file, the trials table and the best config."""
    import pandas as pd

    from src.orchestration import start_sweep_tracker

    tracker = start_sweep_tracker(settings.base.tracking, study=settings.study, task_name=settings.study,
                                  task_type="optimizer", output_dir=settings.sweep_dir,
                                  offline=settings.offline)
    tracker.connect_config({"metric": settings.metric, "direction": settings.direction,
                            "space": {k: r.model_dump(by_alias=True, exclude_defaults=True)
                                      for k, r in settings.space.params.items()}}, name="sweep")
    tracker.upload_artifact("study", study_file)
    tracker.upload_artifact("trials", trials_csv)
    tracker.upload_artifact("trials_json", trials_json)
    table = pd.DataFrame(
        [{**{k: v for k, v in row.items() if k != "params"}, **row["params"]} for row in rows])
    tracker.log_table("trials", "all", table)
    for row in rows:
        if row["value"] is not None:
            tracker.log_scalar(f"valid {settings.metric}", "trial objective", row["value"], row["number"])
    if best is not None:
        tracker.upload_artifact("best_config", best)
        completed = [row["value"] for row in rows if row["state"] == "COMPLETE"]
        choose = max if settings.direction == "maximize" else min
        tracker.log_single_value(f"best valid {settings.metric}", choose(completed))
    return tracker.close()
