"""A run's ClearML offline sessions: keep those a killed step left open, and import them all.

The run's side of ``src.tracking``'s offline import: ``status.json`` says which session folders
the steps opened and whether the run's process still runs; ``src.tracking`` zips and uploads.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from src.config import DataConfig, TrackingConfig
from src.runs.folders import STATUS_FILE, live_owner
from src.runs.status import read_status

if TYPE_CHECKING:
    from src.tracking import PreparedCorpus


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

    ``RUN_DIR`` is a run folder (its steps' sessions, those a killed step left open included, and its
    prepared corpus, published as a ClearML Dataset version) or session zips/folders as they are.
    """
    from src.tracking import import_offline, is_offline_session

    try:
        corpus = None
        if Path(run_dir).is_dir() and not is_offline_session(Path(run_dir)):
            recover_offline_sessions(Path(run_dir))  # sessions a killed step left in the cache
            corpus = prepared_corpus(Path(run_dir))
        task_ids = import_offline(run_dir, corpus=corpus)
    except (FileNotFoundError, RuntimeError, ConnectionError) as err:
        logger.error(str(err))
        return 1
    logger.info("imported {} session(s): {}", len(task_ids), ", ".join(task_ids))
    return 0


def prepared_corpus(run_dir: Path) -> "PreparedCorpus | None":
    """What the run's data_prep step prepared, as the dataset an online data_prep publishes it to
    (``src/steps/corpus.py``); None when the run has none (no completed data_prep, or its folder is gone)."""
    from src.experiment import ExperimentConfig
    from src.runs.files import read_json
    from src.runs.folders import CONFIG_FILE
    from src.tracking import PreparedCorpus

    output = read_status(run_dir)["steps"].get("data_prep", {}).get("output")
    config = read_json(run_dir / CONFIG_FILE)
    if not output or not config:
        return None
    data_dir = Path(output["data_dir"])
    # runs made before the output named it: the folder the task's data_prep writes
    corpus = output.get("corpus") or ("text" if (data_dir / "text").is_dir() else "dataset")
    if not (data_dir / corpus).is_dir():
        logger.warning("{}: no prepared corpus at {}; the import publishes no dataset", run_dir,
                       data_dir / corpus)
        return None
    # config.json holds the whole validated config; the defaults only stand in for a hand-edited one
    task = config.get("task") or ExperimentConfig.model_fields["task"].default
    source = config.get("data", {}).get("source") or DataConfig().source
    project = config.get("tracking", {}).get("project_name") or TrackingConfig().project_name
    return PreparedCorpus(data_dir / corpus, project, f"{task}-{source}", corpus)
