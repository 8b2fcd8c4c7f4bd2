"""Where the served model comes from: a run or checkpoint here, or the ClearML model registry.

``RUN_OR_CHECKPOINT_OR_MODEL`` is, in this order:
- a checkpoint file, a run folder, a run id or name under ``--runs-dir``, or ``latest``;
- ``NAME:TAG`` (or ``NAME`` with ``--tag TAG``): the newest registered model of that name and tag;
- a ClearML model id (32 hex digits).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.runs import resolve_checkpoint
from src.runs import RunNotFoundError, read_json, run_dir_of_checkpoint

MODEL_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint file to load, and what ``/v1/model`` says about where it came from."""

    checkpoint: Path
    info: dict[str, Any] = field(default_factory=dict)


def resolve_source(ref: str, runs_dir: str | Path = "runs", tag: str | None = None,
                   timeout_s: float = 120.0, project: str | None = None) -> ModelSource:
    """The checkpoint that ``ref`` names (see the module docstring), fetched if it is a registered model.

    ``project`` narrows a ``NAME:TAG`` lookup to one ClearML project (None: every project); a model
    id needs none.

    Raises:
        FileNotFoundError: nothing local matches and ``ref`` is neither ``NAME:TAG`` nor a model id.
        src.orchestration.ServerError: a registered model was asked for and the server cannot be used.
    """
    if tag is None:
        try:
            return local_source(resolve_checkpoint(ref, runs_dir))
        except RunNotFoundError as err:
            local_error = err
    name, sep, ref_tag = ref.rpartition(":")
    if tag is not None or (sep and name and ref_tag):
        return registry_source(name=ref if tag is not None else name, tag=tag or ref_tag, timeout_s=timeout_s,
                               project=project)
    if MODEL_ID.fullmatch(ref):
        return registry_source(model_id=ref, timeout_s=timeout_s)
    raise FileNotFoundError(f"{local_error}; nor is {ref!r} a registered model (expected NAME:TAG, NAME with "
                            "--tag TAG, or a 32-hex-digit ClearML model id)")


def local_source(checkpoint: Path) -> ModelSource:
    """A checkpoint here; its run's test metrics (``evaluate/metrics.json``) if it sits in a run folder."""
    run_dir = run_dir_of_checkpoint(checkpoint)
    info: dict[str, Any] = {"source": "local", "checkpoint": str(checkpoint)}
    if run_dir is not None:
        info.update(run=run_dir.name, metrics=read_json(run_dir / "evaluate" / "metrics.json") or None)
    return ModelSource(checkpoint, info)


def registry_source(model_id: str | None = None, name: str | None = None, tag: str | None = None,
                    timeout_s: float = 120.0, project: str | None = None) -> ModelSource:
    """A registered model, downloaded through ``src/orchestration``; its metadata stands in for the run's
    metrics."""
    from src.orchestration import fetch_model

    if model_id is not None:
        model = fetch_model(model_id, timeout_s=timeout_s)
    else:
        model = fetch_model(name=name, tag=tag, project=project, timeout_s=timeout_s)
    clearml = {"model_id": model.id, "name": model.name, "tags": model.tags, "stage": model.stage,
               "published": model.published, "url": model.url}
    return ModelSource(model.local_path, {"source": "clearml", "checkpoint": str(model.local_path),
                                          "clearml": clearml, "metrics": model.metadata or None})
