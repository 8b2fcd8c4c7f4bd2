"""Endpoints other than ``tasks.*``: auth, server, users, projects, queues, workers, models, events."""

import hashlib
import time

import jwt

from tests.clearml_stub.state import ApiError, StubState, endpoint, new_id, now, select, visible

API_VERSION = "2.23"  # the newest services module clearml 2.1.12 ships (clearml/backend_api/services)
SERVER_VERSION = "1.16.0"
ACCESS_KEY = "STUB_ACCESS_KEY"
SECRET_KEY = "STUB_SECRET_KEY"
TOKEN_KEY = "clearml-test-stub-signing-key-0123456789"
_USER = {
    "id": "stub-user",
    "name": "Stub User",
    "company": {"id": "stub-company", "name": "stub"},
    "role": "admin",
    "email": "stub@localhost",
    "created": "2024-01-01T00:00:00+00:00",
}


@endpoint("auth.login")
def login(state: StubState, body: dict) -> dict:
    # The HTTP layer checks the Basic credentials before this runs (a 401 there, like the real server).
    payload = {
        "api_version": API_VERSION,
        "server_version": SERVER_VERSION,
        "feature_set": "basic",
        "env": "stub",
        "exp": int(time.time()) + 24 * 3600,
        "identity": {
            "user": _USER["id"],
            "company": _USER["company"]["id"],
            "role": "admin",
            "user_name": _USER["name"],
            "company_name": "stub",
        },
    }
    return {"token": jwt.encode(payload, TOKEN_KEY, algorithm="HS256")}


@endpoint("server.info")
def server_info(state: StubState, body: dict) -> dict:
    return {
        "version": SERVER_VERSION,
        "build": "stub",
        "commit": "stub",
        "api_version": API_VERSION,
        "uid": "stub-server",
    }


@endpoint("debug.ping")
def debug_ping(state: StubState, body: dict) -> dict:
    return {"msg": "ClearML server (test stub)"}


@endpoint("users.get_current_user")
def get_current_user(state: StubState, body: dict) -> dict:
    return {"user": _USER, "getting_started": {}, "settings": {}}


@endpoint("users.get_all", "users.get_all_ex")
def users_get_all(state: StubState, body: dict) -> dict:
    return {"users": [_USER]}


# --- projects ---------------------------------------------------------------------------------


@endpoint("projects.create")
def projects_create(state: StubState, body: dict) -> dict:
    name = body.get("name")
    if not name:
        raise ApiError("Validation error: name is required")
    if any(p["name"] == name for p in state.projects.values()):
        raise ApiError(f"Project with the same name already exists: name={name}", subcode=403)
    for i in range(1, name.count("/") + 1):  # like the apiserver's _ensure_project: its parents too
        state.project_id(name.rsplit("/", i)[0])
    project_id = state.project_id(name)
    state.projects[project_id].update(
        {
            k: body[k]
            for k in ("description", "tags", "system_tags", "default_output_destination")
            if k in body
        }
    )
    return {"id": project_id}


@endpoint("projects.get_all", "projects.get_all_ex")
def projects_get_all(state: StubState, body: dict) -> dict:
    return {"projects": select(visible(state.projects.values(), body), body), "scroll_id": "stub-scroll"}


@endpoint("projects.get_by_id")
def projects_get_by_id(state: StubState, body: dict) -> dict:
    return {"project": state.get("projects", body.get("project"))}


@endpoint("projects.update")
def projects_update(state: StubState, body: dict) -> dict:
    project = state.get("projects", body.get("project"))
    fields = {k: v for k, v in body.items() if k != "project" and v is not None}
    project.update(fields)
    return {"updated": 1, "fields": fields}


# --- queues -----------------------------------------------------------------------------------


@endpoint("queues.create")
def queues_create(state: StubState, body: dict) -> dict:
    if not body.get("name"):
        raise ApiError("Validation error: name is required")
    return {"id": state.create_queue(body["name"], body.get("tags"), body.get("system_tags"))["id"]}


@endpoint("queues.get_all", "queues.get_all_ex")
def queues_get_all(state: StubState, body: dict) -> dict:
    return {"queues": select(state.queues.values(), body), "scroll_id": "stub-scroll"}


@endpoint("queues.get_by_id")
def queues_get_by_id(state: StubState, body: dict) -> dict:
    return {"queue": state.get("queues", body.get("queue"))}


@endpoint("queues.get_default")
def queues_get_default(state: StubState, body: dict) -> dict:
    default = next((q for q in state.queues.values() if "default" in q["system_tags"]), None)
    if default is None:
        raise ApiError("No default queue defined", subcode=705)
    return {"id": default["id"], "name": default["name"]}


@endpoint("queues.add_task")
def queues_add_task(state: StubState, body: dict) -> dict:
    queue = state.get("queues", body.get("queue"))
    state.get("tasks", body.get("task"))
    queue["entries"].append({"task": body["task"], "added": now()})
    return {"added": 1}


@endpoint("queues.remove_task")
def queues_remove_task(state: StubState, body: dict) -> dict:
    queue = state.get("queues", body.get("queue"))
    before = len(queue["entries"])
    queue["entries"] = [e for e in queue["entries"] if e["task"] != body.get("task")]
    return {"removed": before - len(queue["entries"])}


@endpoint("queues.get_next_task")
def queues_get_next_task(state: StubState, body: dict) -> dict:
    queue = state.get("queues", body.get("queue"))
    if not queue["entries"]:
        return {}
    entry = queue["entries"].pop(0)
    task = state.tasks.get(entry["task"])
    if task is not None:
        task["execution"]["queue"] = queue["id"]
    result = {"entry": entry}
    if body.get("get_task_info"):
        result["task_info"] = {"company": _USER["company"]["id"], "user": _USER["id"]}
    return result


@endpoint("queues.get_queue_metrics")
def queues_get_queue_metrics(state: StubState, body: dict) -> dict:
    return {"queues": []}


@endpoint("queues.update")
def queues_update(state: StubState, body: dict) -> dict:
    queue = state.get("queues", body.get("queue"))
    fields = {k: body[k] for k in ("name", "tags", "system_tags", "display_name") if k in body}
    queue.update(fields)
    return {"updated": 1, "fields": fields}


@endpoint("queues.delete")
def queues_delete(state: StubState, body: dict) -> dict:
    queue = state.get("queues", body.get("queue"))
    if queue["entries"] and not body.get("force"):
        raise ApiError(f"Queue is not empty: {queue['name']}", subcode=703)
    state.queues.pop(queue["id"])
    return {"deleted": 1}


# --- workers ----------------------------------------------------------------------------------


@endpoint("workers.register")
def workers_register(state: StubState, body: dict) -> dict:
    state.workers[body["worker"]] = {
        "id": body["worker"],
        "queues": body.get("queues") or [],
        "tags": body.get("tags") or [],
        "register_time": now(),
        "last_activity_time": now(),
    }
    return {}


@endpoint("workers.unregister")
def workers_unregister(state: StubState, body: dict) -> dict:
    state.workers.pop(body.get("worker"), None)
    return {}


@endpoint("workers.status_report")
def workers_status_report(state: StubState, body: dict) -> dict:
    worker = state.workers.setdefault(body["worker"], {"id": body["worker"], "register_time": now()})
    worker.update({"last_activity_time": now(), "task": body.get("task"), "queue": body.get("queue")})
    return {}


@endpoint("workers.get_all")
def workers_get_all(state: StubState, body: dict) -> dict:
    return {"workers": list(state.workers.values())}


@endpoint("workers.get_runtime_properties")
def workers_get_runtime_properties(state: StubState, body: dict) -> dict:
    return {"runtime_properties": state.workers.get(body.get("worker"), {}).get("runtime_properties", [])}


@endpoint("workers.set_runtime_properties")
def workers_set_runtime_properties(state: StubState, body: dict) -> dict:
    worker = state.workers.setdefault(body["worker"], {"id": body["worker"]})
    worker["runtime_properties"] = body.get("runtime_properties") or []
    return {}


# --- models -----------------------------------------------------------------------------------

_MODEL_FIELDS = (
    "uri",
    "name",
    "comment",
    "tags",
    "system_tags",
    "framework",
    "design",
    "labels",
    "ready",
    "public",
    "project",
    "parent",
    "task",
    "iteration",
    "metadata",
)


@endpoint("models.create")
def models_create(state: StubState, body: dict) -> dict:
    model = {
        "id": new_id(),
        "created": now(),
        "user": _USER["id"],
        "company": _USER["company"]["id"],
        "tags": [],
        "system_tags": [],
        "ready": False,
        "metadata": {},
    }
    model.update({k: body[k] for k in _MODEL_FIELDS if body.get(k) is not None})
    state.models[model["id"]] = model
    return {"id": model["id"], "created": True}


@endpoint("models.get_by_id")
def models_get_by_id(state: StubState, body: dict) -> dict:
    return {"model": state.get("models", body.get("model"))}


@endpoint("models.get_all", "models.get_all_ex")
def models_get_all(state: StubState, body: dict) -> dict:
    return {"models": select(state.models.values(), body), "scroll_id": "stub-scroll"}


@endpoint("models.edit", "models.update")
def models_edit(state: StubState, body: dict) -> dict:
    model = state.get("models", body.get("model"))
    fields = {k: body[k] for k in _MODEL_FIELDS if body.get(k) is not None}
    model.update(fields)
    model["last_update"] = now()
    return {"updated": 1, "fields": fields}


@endpoint("models.update_for_task")
def models_update_for_task(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    model_id = body.get("override_model_id")
    created = model_id is None
    if created:
        model_id = models_create(
            state, {"name": body.get("name") or task["name"], "task": task["id"], "project": task["project"]}
        )["id"]
    model = state.get("models", model_id)
    model.update(
        {k: body[k] for k in ("uri", "name", "comment", "tags", "iteration") if body.get(k) is not None}
    )
    outputs = task["models"].setdefault("output", [])
    outputs[:] = [m for m in outputs if m["model"] != model_id]
    outputs.append({"name": model.get("name"), "model": model_id})
    return {"id": model_id, "created": created, "updated": 1, "fields": {}}


@endpoint("models.set_ready")
def models_set_ready(state: StubState, body: dict) -> dict:
    state.get("models", body.get("model"))["ready"] = True
    return {"updated": 1, "published_task": None}


@endpoint("models.add_or_update_metadata")
def models_add_or_update_metadata(state: StubState, body: dict) -> dict:
    model = state.get("models", body.get("model"))
    for item in body.get("metadata") or []:
        model["metadata"][item["key"]] = item
    return {"updated": 1}


@endpoint("models.delete")
def models_delete(state: StubState, body: dict) -> dict:
    state.models.pop(state.get("models", body.get("model"))["id"])
    return {"deleted": True, "url": None}


# --- events -----------------------------------------------------------------------------------


@endpoint("events.add", "events.add_batch")
def events_add_batch(state: StubState, body: dict) -> dict:
    events = body.get("_lines") or [body]
    for event in events:
        task = state.get("tasks", event.get("task"))
        state.events.append(event)
        if event.get("type") == "training_stats_scalar":
            _update_last_metrics(task, event)
        if event.get("iter") is not None:
            task["last_iteration"] = max(task.get("last_iteration") or 0, int(event["iter"]))
    return {"added": len(events), "errors": 0, "errors_info": {}}


@endpoint("events.get_task_events")
def events_get_task_events(state: StubState, body: dict) -> dict:
    """One page with every event of the task (of ``event_type`` if given), oldest first; no scrolling."""
    wanted = body.get("event_type")
    events = [
        e
        for e in state.events
        if e.get("task") == body.get("task") and (not wanted or e.get("type") == wanted)
    ]
    if body.get("order") == "desc":
        events = events[::-1]
    if body.get("scroll_id"):
        events = []  # everything went out with the first page
    return {"events": events, "returned": len(events), "total": len(events), "scroll_id": "stub-scroll"}


def _update_last_metrics(task: dict, event: dict) -> None:
    metric_hash = hashlib.md5(str(event.get("metric")).encode()).hexdigest()
    variant_hash = hashlib.md5(str(event.get("variant")).encode()).hexdigest()
    variants = task["last_metrics"].setdefault(metric_hash, {})
    old = variants.get(variant_hash, {})
    value = event.get("value")
    variants[variant_hash] = {
        "metric": event.get("metric"),
        "variant": event.get("variant"),
        "value": value,
        "min_value": min(old.get("min_value", value), value),
        "max_value": max(old.get("max_value", value), value),
        "last_iter": event.get("iter"),
    }


@endpoint("events.scalar_metrics_iter_histogram")
def events_scalar_metrics_iter_histogram(state: StubState, body: dict) -> dict:
    """Every scalar series of the task: ``{metric: {variant: {"name", "x": iterations, "y": values}}}``.

    The shape the SDK reads (``Task.get_reported_scalars``; ``Objective.get_objective`` in
    clearml/automation/optimization.py takes ``[title][series]["x"][-1]`` and ``["y"][-1]``); the
    schema's generated response class (``images``) does not describe it. The server's down-sampling
    (``samples``) is left out: every point is returned, one per iteration (the last reported).
    """
    task_id = state.get("tasks", body.get("task"))["id"]
    # the request's "metrics" filter: [{"metric", "variants"}], no variants meaning all of that metric
    wanted = {m.get("metric"): set(m.get("variants") or ()) for m in body.get("metrics") or []}
    points: dict[str, dict[str, dict[int, float]]] = {}
    for event in state.events:
        if event.get("task") != task_id or event.get("type") != "training_stats_scalar":
            continue
        metric, variant = event.get("metric"), event.get("variant")
        if wanted and (metric not in wanted or wanted[metric] and variant not in wanted[metric]):
            continue
        points.setdefault(metric, {}).setdefault(variant, {})[int(event.get("iter") or 0)] = event["value"]
    return {metric: {variant: {"name": variant, "x": sorted(values), "y": [values[i] for i in sorted(values)]}
                     for variant, values in variants.items()}
            for metric, variants in points.items()}
