"""Find a previous step's output: the local path it returned, else its task's artifact."""

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loguru import logger

from src.tracking.connection import clearml_configured


def resolve_input(result: Mapping[str, Any], key: str, *, artifact: str, subdir: str | None = None) -> Path:
    """``Path(result[key])`` if it exists here; otherwise artifact ``artifact`` of task ``result["task_id"]``.

    On an agent on another machine the upstream step's local path is absent, so the artifact is
    downloaded (folders come back extracted). With ``subdir``, the artifact is the content of
    ``result[key]/subdir``: the returned folder then holds it under that name, as the local one does.
    """
    local = Path(result[key])
    if local.exists():
        return local
    task_id = str(result.get("task_id") or "")
    if not task_id or task_id.startswith("offline-") or task_id == "tracking-off" or not clearml_configured():
        raise FileNotFoundError(
            f"{key}={local} does not exist on this machine and task {task_id or '(none)'} has no server "
            f"artifact {artifact!r} to download (offline or tracking-off runs must share the run folder)"
        )
    from clearml import Task

    artifacts = Task.get_task(task_id=task_id).artifacts
    if artifact not in artifacts:
        raise FileNotFoundError(f"task {task_id} has no artifact {artifact!r} (it has {sorted(artifacts)})")
    copy = Path(artifacts[artifact].get_local_copy(extract_archive=True))
    logger.info(
        "{}={} not found here; using artifact {!r} of task {} at {}", key, local, artifact, task_id, copy
    )
    if subdir is None or copy.name == subdir:
        return copy if subdir is None else copy.parent
    holder = Path(tempfile.mkdtemp(prefix="clearml-input-"))
    (holder / subdir).symlink_to(copy, target_is_directory=copy.is_dir())
    return holder
