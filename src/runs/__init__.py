"""Run folders: one per ``train``, found again by path, id, name or ``latest``; guarded resume; listing."""

from src.runs.files import DamagedFileError, read_json, write_atomically
from src.runs.folders import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    LATEST,
    RunInfo,
    RunNotFoundError,
    list_runs,
    live_owner,
    new_run_dir,
    new_run_id,
    owner,
    point_latest,
    resolve_checkpoint,
    resolve_run,
    run_dir_of_checkpoint,
)
from src.runs.resume import ResumeError, check_resume, config_differences, flatten
from src.runs.sessions import import_offline_cli, recover_offline_sessions
from src.runs.status import STATUS_FILE, read_status, save_traceback, update_run, update_status

__all__ = [
    "BEST_CHECKPOINT",
    "CONFIG_FILE",
    "DamagedFileError",
    "LATEST",
    "STATUS_FILE",
    "ResumeError",
    "RunInfo",
    "RunNotFoundError",
    "check_resume",
    "config_differences",
    "flatten",
    "import_offline_cli",
    "list_runs",
    "live_owner",
    "new_run_dir",
    "new_run_id",
    "owner",
    "point_latest",
    "read_json",
    "read_status",
    "recover_offline_sessions",
    "resolve_checkpoint",
    "resolve_run",
    "run_dir_of_checkpoint",
    "save_traceback",
    "update_run",
    "update_status",
    "write_atomically",
]
