"""Registered models from the ClearML model registry: found by id or by name and tag, downloaded.

The server is asked nothing before ``check_server`` has answered (seconds, with what to fix);
then every SDK call runs in a daemon thread under one hard deadline, since the SDK retries an
unreachable host for minutes and cannot be interrupted from outside.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from src.orchestration.server import ServerMisconfiguredError, ServerUnreachableError, check_server
from src.tracking import clearml_configured

T = TypeVar("T")
STAGES = ("production", "candidate")  # the tags the register step gives (src/steps/table.py: register)


class ModelNotFoundError(FileNotFoundError):
    """No registered model matches; the message says what was looked for."""


@dataclass(frozen=True)
class RegisteredModel:
    """A registry entry and the local copy of its weights file."""

    id: str
    name: str
    project: str | None  # the project id
    tags: list[str]
    published: bool
    metadata: dict[str, str]
    local_path: Path
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str | None:
        """``production`` / ``candidate`` from the tags (or the ``stage`` metadata), else None."""
        return next((s for s in STAGES if s in self.tags), None) or self.metadata.get("stage")


def fetch_model(model_id: str | None = None, *, name: str | None = None, tag: str | None = None,
                project: str | None = None, only_published: bool = False,
                timeout_s: float = 120.0) -> RegisteredModel:
    """The model ``model_id``, or the newest model named ``name`` carrying ``tag``; its weights downloaded.

    Args:
        model_id: a ClearML model id; or None and ``name`` (with ``tag``, ``project`` to narrow it).
        only_published: with ``name``, consider published models only.
        timeout_s: the whole lookup and download; past it, ``ServerUnreachableError``.

    Raises:
        ServerMisconfiguredError / ServerUnreachableError: no usable server (``check_server``'s message).
        ModelNotFoundError: no such id, or no model with that name and tag.
    """
    if (model_id is None) == (name is None):
        raise ValueError(f"give a model id or a model name, not both or neither (got id={model_id!r}, "
                         f"name={name!r})")
    if not clearml_configured():
        raise ServerMisconfiguredError("a registered model needs a ClearML server, and none is configured "
                                       "here (run `clearml-init` or set CLEARML_API_HOST and the keys)")
    deadline = time.monotonic() + timeout_s
    check_server(timeout=min(5.0, timeout_s))
    what = f"model id {model_id}" if model_id else f"model {name!r}" + (f" tagged {tag!r}" if tag else "")
    found = _within(deadline, what, lambda: _lookup(model_id, name, tag, project, only_published))
    local = _within(deadline, f"the weights of {what}", found.get_local_copy)
    if not local or not Path(local).is_file():
        raise ModelNotFoundError(
            f"{what} has no downloadable weights file (url {found.url!r}, got {local!r})")
    model = RegisteredModel(id=found.id, name=found.name, project=_project_id(found),
                            tags=list(found.tags or []),
                            published=bool(found.published), metadata=_metadata(found),
                            local_path=Path(local),
                            url=found.url or "")
    logger.info("fetched {} ({}, tags {}) to {}", model.name, model.id, model.tags, model.local_path)
    return model


def _lookup(model_id: str | None, name: str | None, tag: str | None, project: str | None,
            only_published: bool):
    from clearml import Model

    if model_id is not None:
        try:
            model = Model(model_id=model_id)
            _ = model.name  # the SDK fetches lazily: this is the request that fails for an unknown id
        # 2.1.12 logs the server's answer and leaves no model data (None)
        except (ValueError, AttributeError):
            raise ModelNotFoundError(f"no model with id {model_id!r} on the ClearML server") from None
        return model
    found = Model.query_models(project_name=project, model_name=name, tags=[tag] if tag else None,
                               only_published=only_published, max_results=1)
    if not found:
        where = f" in project {project!r}" if project else ""
        raise ModelNotFoundError(f"no {'published ' if only_published else ''}model named {name!r}"
                                 f"{f' with tag {tag!r}' if tag else ''}{where} on the ClearML server")
    return found[0]


def _within(deadline: float, what: str, call: Callable[[], T]) -> T:
    """``call()`` in a daemon thread; its result, its exception, or ServerUnreachableError at the deadline."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 (handed to the caller's thread)
            box["error"] = err

    worker = threading.Thread(target=run, name="clearml-model-store", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise ServerUnreachableError(f"fetching {what} from the ClearML server did not finish in time "
                                     "(model_fetch_timeout_s); check the server and the files host")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _metadata(model) -> dict[str, str]:
    try:
        return {key: str(item.get("value")) for key, item in (model.get_all_metadata() or {}).items()}
    except Exception as err:  # noqa: BLE001 (an older server without model metadata: not worth failing a load)
        logger.warning("model {}: metadata unavailable ({})", model.id, err)
        return {}


def _project_id(model) -> str | None:
    project = getattr(model, "project", None)
    return str(project) if project else None
