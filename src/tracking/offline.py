"""Upload a run's offline ClearML sessions to a server, with real model weights.

``Task.import_offline_session`` re-creates each offline OutputModel by calling ``update_weights``
with what the session recorded: the weights' original absolute path under the offline cache and
no upload destination, so the server model would point at ``file://`` on the machine that trained.
``prepare_session_for_import`` rewrites that record in an extracted copy of the session: weights
from the session's own ``models/`` copy (or the ``"{name}-weights"`` artifact), uploaded to the files
server. It also drops the model's duplicate ``config_text`` (see ``sdk_compat.importable_model_record``:
otherwise no session with a configured model imports). Metadata and publishing, which need a
server, are applied afterwards from the ``"{name}-registration"`` artifact. The run's prepared corpus
becomes a ClearML Dataset version, and every imported task records it (``src/tracking/datasets.py``).
"""

import json
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from src.tracking.connection import check_server_reachable, clearml_configured
from src.tracking.datasets import PreparedCorpus, link_session_to_dataset, publish_corpus
from src.tracking.session_record import TASK_FILE, SessionRecord, is_offline_session, read_session_record
from src.tracking.lineage import imported_record_path, server_model_id
from src.tracking.tracker import (INPUT_MODEL_ARTIFACT, MODEL_UPDATE_ARTIFACT, apply_model_update,
                                  typed_metadata)

PathLike = str | Path


def find_offline_sessions(run_dir_or_zips: PathLike | Sequence[PathLike]) -> list[Path]:
    """Session zips/folders given directly, or found (recursively) in a run folder, oldest first."""
    items = [run_dir_or_zips] if isinstance(run_dir_or_zips, (str, Path)) else list(run_dir_or_zips)
    found: list[Path] = []
    for item in map(Path, items):
        if is_offline_session(item):
            found.append(item)
        elif item.is_dir():
            zips = [p for p in item.rglob("*.zip") if is_offline_session(p)]
            found += sorted(zips, key=lambda p: (p.stat().st_mtime_ns, p.as_posix()))
        else:
            raise FileNotFoundError(
                f"{item} is neither a run folder nor a ClearML offline session zip/folder"
            )
    return list(dict.fromkeys(p.resolve() for p in found))


def prepare_session_for_import(session_path: Path, work_dir: Path, upload_uri: str,
                               parent: str | None = None,
                               input_models: Sequence[dict[str, str]] = (),
                               dataset_id: str | None = None) -> Path:
    """Extract (or copy) a session into ``work_dir`` and point its models at weights inside it, to
    ``upload_uri``; ``parent``: the server id of the task to file it under (its parent in the web UI).
    ``input_models`` (``{"name", "model"}`` with server model ids) become the task's input models:
    ``Task.import_offline_session`` creates the task from task.json's fields, ``models`` included.
    With ``dataset_id``, the task records that it used that dataset version."""
    folder = Path(work_dir) / Path(session_path).name.removesuffix(".zip")
    if Path(session_path).is_dir():
        shutil.copytree(session_path, folder)
    else:
        with zipfile.ZipFile(session_path) as zf:
            zf.extractall(folder)
    task_file = folder / TASK_FILE
    task = json.loads(task_file.read_text(encoding="utf-8"))
    session = read_session_record(folder)
    from src.tracking import sdk_compat

    records = [sdk_compat.importable_model_record(r) for r in task.get("offline_output_models") or []]
    task["offline_output_models"] = records
    if parent is not None:
        task["parent"] = parent  # the importer creates the task, then edits it with these fields
    for record, model in zip(records, session.models, strict=True):
        weights = _local_weights(folder, session, model.name, model.weights_file)
        if weights is None:
            logger.warning(
                "model {!r} of {}: no weights file in the session; left as recorded", model.name, session_path
            )
            continue
        record["weights"].update(
            weights_filename=weights.as_posix(), register_uri=None, upload_uri=upload_uri
        )
    if input_models:
        task["models"] = {**(task.get("models") or {}), "input": [dict(item) for item in input_models]}
    if dataset_id is not None:
        link_session_to_dataset(task, dataset_id)
    task_file.write_text(json.dumps(task, ensure_ascii=True, sort_keys=True), encoding="utf-8")
    return folder


def pending_input_models(session: SessionRecord, known: dict[str, str]) -> list[dict[str, str]]:
    """The input models an offline task recorded (``init_from``'s, a distillation teacher's), as ``{"name",
    "model"}`` with server model ids; a source not imported into this server yet is left out, with a warning
    saying what to import first."""
    linked = []
    for artifact, path in sorted(session.artifacts.items()):
        is_input_model = artifact == INPUT_MODEL_ARTIFACT or artifact.startswith(f"{INPUT_MODEL_ARTIFACT}-")
        if not path or not is_input_model:
            continue
        source = json.loads(session.read_bytes(path))
        model_id = server_model_id(source, known)
        if model_id is None:
            logger.warning("task {}: its input model {} ({}, from {}) is not on this server; import that run "
                           "first to link it", session.task_id, source.get("model_id"), source["name"],
                           source.get("session"))
            continue
        linked.append({"name": source["name"], "model": model_id})
    return linked


def _local_weights(folder: Path, session: SessionRecord, name: str, weights_file: str | None) -> Path | None:
    candidates = [weights_file, session.artifacts.get(f"{name}-weights")]
    return next((folder / c for c in candidates if c and (folder / c).is_file()), None)


def import_offline(
    run_dir_or_zips: PathLike | Sequence[PathLike],
    *,
    output_uri: str | None = None,
    server_timeout_s: float = 5.0,
    corpus: PreparedCorpus | None = None,
) -> list[str]:
    """Import every offline session of a run into the configured server; returns the new task ids.

    Model weights are uploaded to ``output_uri`` (default: the ClearML files server). Sessions a
    killed step left open are imported once zipped into the run (``src.runs.import_offline_cli``
    does that first, as ``src.runs`` knows whether the run still runs). ``corpus``: the run's prepared
    data, published first as a ClearML Dataset version (reused when one holds the same content); every
    imported task then records that version as an online step does (``link_session_to_dataset``).
    """
    sessions = find_offline_sessions(run_dir_or_zips)
    if not sessions:
        raise FileNotFoundError(f"no ClearML offline sessions found in {run_dir_or_zips}")
    if not clearml_configured():
        raise RuntimeError(
            "no ClearML server is configured (CLEARML_API_HOST, CLEARML_CONFIG_FILE or ~/clearml.conf); "
            "run `clearml-init` or set CLEARML_API_HOST and the access keys"
        )
    from clearml import Task
    from clearml.backend_api import Session

    from src.tracking import sdk_compat

    check_server_reachable(Session.get_api_server_host(), server_timeout_s)
    Task.set_offline(False)
    sdk_compat.set_report_in_subprocess(True)
    upload_uri = output_uri or Session.get_files_server_host()
    dataset_id = publish_corpus(corpus, description="imported with an offline run").id if corpus else None
    task_ids: dict[str, str] = {}  # offline id -> server id
    model_ids: dict[str, str] = {}  # offline model id -> server model id
    updates: list[dict[str, Any]] = []
    records = {path: read_session_record(path) for path in sessions}
    # a sweep's parent task first: its trials, written before it, are filed under it as they import
    sessions = sorted(sessions, key=lambda path: sweep_of(records[path].task, parent=True) is None)
    sweep_parents: dict[tuple, str] = {}  # sweep_of(parent task) -> its server id
    with tempfile.TemporaryDirectory(prefix="clearml-import-") as work_dir:
        for path in sessions:
            parent = sweep_parents.get(sweep_of(records[path].task, parent=False))
            inputs = pending_input_models(records[path], model_ids)
            folder = prepare_session_for_import(path, Path(work_dir), upload_uri, parent=parent,
                                                input_models=inputs, dataset_id=dataset_id)
            task_id = Task.import_offline_session(folder.as_posix())
            if (key := sweep_of(records[path].task, parent=True)) is not None:
                sweep_parents[key] = task_id
            session = read_session_record(folder)
            _apply_registrations(task_id, session)
            updates += pending_model_updates(session)
            logger.info("imported {} as task {}", path, task_id)
            task_ids[session.task_id] = task_id
            model_ids |= _note_import(path, session, task_id, Session.get_api_server_host())
    for update in updates:
        _apply_model_update(update, task_ids)
    return list(task_ids.values())


def sweep_of(task: dict[str, Any], *, parent: bool) -> tuple[str, str] | None:
    """``(project, "sweep-<study>")`` of a sweep's parent task (``parent=True``: the ``optimizer`` task)
    or of one of its trials (``parent=False``); None for any other task.

    Offline, a trial cannot name its parent when it is written: the parent task opens after the
    trials (one running task per process) and every offline id changes on import. The sweep's tag
    and sub-project, which ``src.orchestration.start_sweep_tracker`` gives both, pair them instead.
    """
    if (task.get("type") == "optimizer") != parent:
        return None
    tags = [t for t in task.get("tags") or [] if t.startswith("sweep-")]
    return (task.get("project_name") or "", tags[0]) if len(tags) == 1 and "sweep" in task["tags"] else None


def _note_import(path: Path, session: SessionRecord, task_id: str, server: str) -> dict[str, str]:
    """Note beside the session what it became on ``server`` (a later import links input models to it); the
    offline -> server ids of its models."""
    from clearml import Task

    offline_ids = {record.get("init", {}).get("name"): record.get("id")
                   for record in session.task.get("offline_output_models") or []}
    imported = Task.get_task(task_id=task_id).models["output"] if offline_ids else []
    models = {offline_ids[m.name]: m.id for m in imported if offline_ids.get(m.name)}
    record = {"server": server, "offline_task_id": session.task_id, "task_id": task_id, "models": models}
    try:
        imported_record_path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as err:  # a read-only run folder: this import is complete; only later links need it
        logger.warning("could not note the import of {} beside it ({})", path, err)
    return models


def pending_registrations(session: SessionRecord) -> dict[str, dict[str, Any]]:
    """``{model name: {"metadata": ..., "publish": ...}}`` that ``Tracker.register_model`` left for the
    server."""
    return {
        model.name: json.loads(session.read_bytes(session.artifacts[f"{model.name}-registration"]))
        for model in session.models
        if session.artifacts.get(f"{model.name}-registration")
    }


def pending_model_updates(session: SessionRecord) -> list[dict[str, Any]]:
    """What ``Tracker.update_model`` left offline for another task's model (register -> train)."""
    path = session.artifacts.get(MODEL_UPDATE_ARTIFACT)
    return [json.loads(session.read_bytes(path))] if path else []


def _apply_model_update(update: dict[str, Any], task_ids: dict[str, str]) -> None:
    """Tag the imported model of the update's source task: the model the train step registered."""
    from clearml import Task

    source = task_ids.get(update["source_task_id"])
    if source is None:
        logger.warning("model update for {!r} skipped: its task {} was not among the imported sessions",
                       update["name"], update["source_task_id"])
        return
    models = [m for m in Task.get_task(task_id=source).models["output"] if m.name == update["name"]]
    if not models:
        logger.warning("model update skipped: imported task {} has no output model {!r}", source,
                       update["name"])
        return
    apply_model_update(models[-1], update)
    logger.info("model {} ({}) tagged {}", update["name"], models[-1].id, update["tags"])


def _apply_registrations(task_id: str, session: SessionRecord) -> None:
    registrations = pending_registrations(session)
    if not registrations:
        return
    from clearml import Task

    for model in Task.get_task(task_id=task_id).models["output"]:
        registration = registrations.get(model.name)
        if registration is None:
            continue
        model.set_all_metadata(
            {k: typed_metadata(v) for k, v in registration["metadata"].items()}, replace=False
        )
        if registration.get("publish"):
            model.publish()

