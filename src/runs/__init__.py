"""Run folders: one per ``train``, found again by path, id, name or ``latest``; guarded resume; listing."""

from src.runs.folders import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    LATEST,
    RunInfo,
    RunNotFoundError,
    list_runs,
    new_run_dir,
    new_run_id,
    point_latest,
    resolve_checkpoint,
    resolve_run,
    run_dir_of_checkpoint,
)
from src.runs.resume import ResumeError, check_resume, config_differences, flatten
from src.runs.sessions import import_offline_cli, recover_offline_sessions

__all__ = [
    "BEST_CHECKPOINT",
    "CONFIG_FILE",
    "LATEST",
    "ResumeError",
    "RunInfo",
    "RunNotFoundError",
    "check_resume",
    "config_differences",
    "flatten",
    "import_offline_cli",
    "list_runs",
    "new_run_dir",
    "new_run_id",
    "point_latest",
    "recover_offline_sessions",
    "resolve_checkpoint",
    "resolve_run",
    "run_dir_of_checkpoint",
]
