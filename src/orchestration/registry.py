"""The model registry as the register step sees it: the best published model so far."""

import math
from collections.abc import Iterable

from loguru import logger

from src.tracking import check_server_reachable, clearml_configured, offline_forced_by_env


def published_model_metric(
    project: str, model_name: str, metric: str, *, higher_is_better: bool, timeout_s: float = 5.0
) -> float | None:
    """The champion's metadata ``metric``: the best among published models named ``model_name`` in
    ``project``.

    Best in the metric's own direction (``higher_is_better``, as the task's gate says): the highest
    BLEU or accuracy, the lowest bits per character or loss. ``None`` when there is none, or when no
    server is in use (offline: nothing to compare with).
    """
    if not clearml_configured() or offline_forced_by_env():
        return None
    from clearml import Model, Task
    from clearml.backend_api import Session

    if Task.is_offline():
        return None
    check_server_reachable(Session.get_api_server_host(), timeout_s)
    values = []
    for model in Model.query_models(project_name=project, model_name=model_name, only_published=True):
        raw = model.get_metadata(metric) if model.name == model_name else None  # model_name is a regex there
        try:
            values.append(float(raw))
        except (TypeError, ValueError):
            if raw not in (None, ""):
                logger.warning("model {} has non-numeric {}={!r}; ignored", model.id, metric, raw)
    return best_value(values, higher_is_better=higher_is_better)


def best_value(values: Iterable[float], *, higher_is_better: bool) -> float | None:
    """The best finite value in the metric's direction; None if there is none (a NaN would win every
    comparison's "not better" test and freeze the gate, so it never becomes the champion)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if higher_is_better else min(finite)
