"""A run's ClearML offline sessions: keep those a killed step left open, and import them all.

The run's side of ``src.tracking``'s offline import: ``status.json`` says which session folders
the steps opened and whether the run's process still runs; ``src.tracking`` zips and uploads.
"""

import json
from pathlib import Path

from loguru import logger

from src.runs.folders import STATUS_FILE, live_owner


def recover_offline_sessions(run_dir: Path) -> list[Path]:
    """Zip the left-open sessions of ``run_dir``'s steps; returns the zips written."""
    from src.tracking import keep_interrupted_sessions

    status_path = Path(run_dir) / STATUS_FILE
    if not status_path.is_file():
        return []
    status = json.loads(status_path.read_text(encoding="utf-8"))
    running = live_owner(status)
    if running:  # its sessions are open because it is still writing them
        logger.info("{} is still running ({}); its open offline sessions are left alone", run_dir, running)
        return []
    return keep_interrupted_sessions(Path(run_dir), status.get("steps", {}))


def import_offline_cli(run_dir: str) -> int:
    """``python -m src.main import-offline RUN_DIR``: exit code 0 on success, 1 with an explanation otherwise.

    ``RUN_DIR`` is a run folder (its steps' sessions, those a killed step left open included) or
    session zips/folders as they are.
    """
    from src.tracking import import_offline, is_offline_session

    try:
        if Path(run_dir).is_dir() and not is_offline_session(Path(run_dir)):
            recover_offline_sessions(Path(run_dir))  # sessions a killed step left in the cache
        task_ids = import_offline(run_dir)
    except (FileNotFoundError, RuntimeError, ConnectionError) as err:
        logger.error(str(err))
        return 1
    logger.info("imported {} session(s): {}", len(task_ids), ", ".join(task_ids))
    return 0
