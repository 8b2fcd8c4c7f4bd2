"""Nothing recorded before a kill is lost: zip the offline sessions that a killed step left open.

An offline task writes into ``<CLEARML_CACHE_DIR>/offline/<id>/`` and only ``close()`` zips that
folder into the run folder. After ``kill -9`` the folder stays in the cache, where nobody looks.
Each step records its folder in ``status.json`` when it starts (``offline_folder``); given those
records, this module zips every such folder whose step never stored a session, into the step's
``clearml_offline/``, so ``import-offline`` and ``--resume`` find it like any other session.
Reading ``status.json`` and telling a live run from a killed one is ``src.runs``' part
(``src.runs.recover_offline_sessions``).
"""

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loguru import logger

from src.tracking.session_record import TASK_FILE
from src.tracking.tracker import OFFLINE_DIR_NAME


def keep_interrupted_sessions(run_dir: Path, steps: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Zip the left-open sessions of ``steps`` (``{step name: its status record}``) into ``run_dir``.

    A step's record names its session folder (``offline_folder``) and, once closed, its zip
    (``offline_session``). Returns the zips written; a session closed normally or recovered
    already is left alone.
    """
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
        logger.warning("step {} was interrupted; its offline session {} is kept as {}", name, folder,
                       zip_path)
        recovered.append(zip_path)
    return recovered
