"""Nothing recorded before a kill is lost: zip the offline sessions that a killed run left open.

An offline task writes into ``<CLEARML_CACHE_DIR>/offline/<id>/`` and only ``close()`` zips that
folder into the run folder. After ``kill -9`` the folder stays in the cache, where nobody looks.
Each step records its folder in ``status.json`` when it starts (``offline_folder``); this module
zips every such folder whose step never stored a session, into the step's ``clearml_offline/``,
so ``import-offline`` and ``--resume`` find it like any other session.
"""

import shutil
from pathlib import Path

from loguru import logger

from src.runs.folders import live_owner
from src.tracking.offline_session import TASK_FILE
from src.tracking.tracker import OFFLINE_DIR_NAME


def recover_offline_sessions(run_dir: Path) -> list[Path]:
    """Zip the left-open sessions of ``run_dir``'s steps; returns the zips written."""
    import json

    status_path = Path(run_dir) / "status.json"
    if not status_path.is_file():
        return []
    status = json.loads(status_path.read_text(encoding="utf-8"))
    running = live_owner(status)
    if running:  # its sessions are open because it is still writing them
        logger.info("{} is still running ({}); its open offline sessions are left alone", run_dir, running)
        return []
    steps = status.get("steps", {})
    recovered = []
    for name, step in steps.items():
        folder = Path(step["offline_folder"]) if step.get("offline_folder") else None
        if folder is None or step.get("offline_session") or not (folder / TASK_FILE).is_file():
            continue
        sessions = Path(run_dir) / name / OFFLINE_DIR_NAME
        target = sessions / f"{folder.name}-interrupted"
        if (sessions / f"{folder.name}.zip").exists() or target.with_suffix(".zip").exists():
            continue  # closed normally, or recovered already
        target.parent.mkdir(parents=True, exist_ok=True)
        zip_path = Path(shutil.make_archive(str(target), "zip", root_dir=folder))
        logger.warning("step {} was interrupted; its offline session {} is kept as {}", name, folder, zip_path)
        recovered.append(zip_path)
    return recovered
