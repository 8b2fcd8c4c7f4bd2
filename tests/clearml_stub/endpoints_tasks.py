"""``tasks.*`` endpoints: creation, edits, hyperparameters, configuration, artifacts, status, queues."""

import copy

from tests.clearml_stub.state import ApiError, StubState, endpoint, new_id, now, select, visible

# The apiserver's task state machine (clearml-server apiserver/bll/task/utils.py, recent versions):
# status -> statuses it may move to without ``force``. Staying put is allowed, except when enqueueing.
_STATE_MACHINE = {
    "created": {"queued", "in_progress"},
    "queued": {"created", "in_progress", "stopped"},
    "in_progress": {"stopped", "failed", "created", "completed"},
    "stopped": {
        "closed",
        "created",
        "failed",
        "queued",
        "in_progress",
        "published",
        "publishing",
        "completed",
    },
    "closed": {"created", "failed", "published", "publishing", "stopped"},
    "failed": {"created", "stopped", "published", "queued"},
    "publishing": {"published"},
    "published": set(),
    "completed": {"published", "in_progress", "created"},
}

_EDITABLE = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "project",
    "input",
    "execution",
    "script",
    "hyperparams",
    "configuration",
    "models",
    "container",
    "runtime",
)


def _new_task(body: dict) -> dict:
    execution = dict(body.get("execution") or {})
    execution.setdefault("artifacts", [])
    return {
        "id": new_id(),
        "name": body.get("name"),
        "type": body.get("type", "training"),
        "status": "created",
        "status_history": [("created", "")],
        "project": body.get("project"),
        "parent": body.get("parent"),
        "comment": body.get("comment", ""),
        "tags": list(body.get("tags") or []),
        "system_tags": list(body.get("system_tags") or []),
        "script": dict(body.get("script") or {}),
        "execution": execution,
        "hyperparams": copy.deepcopy(body.get("hyperparams") or {}),
        "configuration": copy.deepcopy(body.get("configuration") or {}),
        "models": body.get("models") or {"input": [], "output": []},
        "container": body.get("container") or {},
        "runtime": body.get("runtime") or {},
        "output": {"destination": body.get("output_dest")},
        "user": "stub-user",
        "company": "stub-company",
        "created": now(),
        "last_update": now(),
        "last_change": now(),
        "status_changed": now(),
        "last_iteration": 0,
        "last_metrics": {},
    }


def public_task(task: dict) -> dict:
    """The task as the API returns it (without the stub's own bookkeeping)."""
    return {k: v for k, v in task.items() if k != "status_history"}


def set_status(task: dict, status: str, body: dict, allow_same: bool = True) -> dict:
    current = task["status"]
    if not body.get("force"):
        if status == current and not allow_same:
            raise ApiError(f"Task already in requested status: {status} (task={task['id']})", subcode=110)
        if status != current and status not in _STATE_MACHINE[current]:
            raise ApiError(
                f"Invalid status change: current_status={current}, new_status={status} (task={task['id']})",
                subcode=110,
            )
    if status == "queued":
        task["system_tags"] = [t for t in task["system_tags"] if t != "development"]
    task["status"] = status
    task["status_reason"] = body.get("status_reason") or ""
    task["status_message"] = body.get("status_message") or ""
    task["status_changed"] = task["last_change"] = now()
    task["status_history"].append((status, task["status_reason"]))
    if status == "in_progress":
        task["started"] = now()
    elif status in ("completed", "stopped", "failed", "closed"):
        task["completed"] = now()
    return {"updated": 1, "fields": {"status": status}}


@endpoint("tasks.create")
def create(state: StubState, body: dict) -> dict:
    if not body.get("name"):
        raise ApiError("Validation error: name is required")
    task = _new_task(body)
    state.tasks[task["id"]] = task
    return {"id": task["id"]}


@endpoint("tasks.get_by_id")
def get_by_id(state: StubState, body: dict) -> dict:
    return {"task": public_task(state.get("tasks", body.get("task")))}


@endpoint("tasks.get_all", "tasks.get_all_ex")
def get_all(state: StubState, body: dict) -> dict:
    tasks = select(visible(state.tasks.values(), body), body)
    return {"tasks": [public_task(t) for t in tasks], "scroll_id": "stub-scroll"}


@endpoint("tasks.edit")
def edit(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    allowed = ("created", "in_progress") if body.get("force") else ("created",)
    if task["status"] not in allowed:
        raise ApiError(f"Invalid task status: expected one of {allowed}, got {task['status']}", subcode=110)
    fields = {k: copy.deepcopy(body[k]) for k in _EDITABLE if body.get(k) is not None}
    if body.get("output_dest") is not None:
        task["output"] = {**task.get("output", {}), "destination": body["output_dest"]}
    task.update(fields)
    task["execution"].setdefault("artifacts", [])
    task["last_change"] = now()
    return {"updated": 1, "fields": fields}


@endpoint("tasks.update")
def update(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    fields = {
        k: body[k]
        for k in ("name", "tags", "system_tags", "comment", "project", "created")
        if body.get(k) is not None
    }
    task.update(fields)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.set_requirements")
def set_requirements(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    task["script"]["requirements"] = body.get("requirements")
    return {"updated": 1, "fields": {}}


@endpoint("tasks.edit_hyper_params")
def edit_hyper_params(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    replace = body.get("replace_hyperparams") or "none"
    params = task["hyperparams"] = {} if replace == "all" else task["hyperparams"]
    if replace == "section":
        for item in body.get("hyperparams") or []:
            params[item.get("section") or "General"] = {}
    for item in body.get("hyperparams") or []:
        section = item.get("section") or "General"
        params.setdefault(section, {})[item["name"]] = {**item, "section": section}
    return {"updated": 1}


@endpoint("tasks.delete_hyper_params")
def delete_hyper_params(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    for item in body.get("hyperparams") or []:
        section = task["hyperparams"].get(item.get("section"), {})
        if item.get("name"):
            section.pop(item["name"], None)
        else:
            task["hyperparams"].pop(item.get("section"), None)
    return {"deleted": 1}


@endpoint("tasks.get_hyper_params")
def get_hyper_params(state: StubState, body: dict) -> dict:
    params = []
    for task_id in body.get("tasks") or []:
        task = state.get("tasks", task_id)
        items = [item for section in task["hyperparams"].values() for item in section.values()]
        params.append({"task": task_id, "hyperparams": items})
    return {"params": params}


@endpoint("tasks.edit_configuration")
def edit_configuration(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    if body.get("replace_configuration"):
        task["configuration"] = {}
    for item in body.get("configuration") or []:
        task["configuration"][item["name"]] = dict(item)
    return {"updated": 1}


@endpoint("tasks.delete_configuration")
def delete_configuration(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    for name in body.get("configuration") or []:
        task["configuration"].pop(name, None)
    return {"deleted": 1}


@endpoint("tasks.get_configurations")
def get_configurations(state: StubState, body: dict) -> dict:
    names = body.get("names")
    result = []
    for task_id in body.get("tasks") or []:
        task = state.get("tasks", task_id)
        items = [c for n, c in task["configuration"].items() if not names or n in names]
        result.append({"task": task_id, "configuration": items})
    return {"configurations": result}


@endpoint("tasks.get_configuration_names")
def get_configuration_names(state: StubState, body: dict) -> dict:
    return {
        "configurations": [
            {"task": t, "names": list(state.get("tasks", t)["configuration"])}
            for t in body.get("tasks") or []
        ]
    }


@endpoint("tasks.add_or_update_artifacts")
def add_or_update_artifacts(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    artifacts = task["execution"].setdefault("artifacts", [])
    for new in body.get("artifacts") or []:
        key = (new["key"], new.get("mode", "output"))
        artifacts[:] = [a for a in artifacts if (a["key"], a.get("mode", "output")) != key]
        artifacts.append(dict(new))
    return {"updated": len(body.get("artifacts") or [])}


@endpoint("tasks.delete_artifacts")
def delete_artifacts(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    keys = {a["key"] for a in body.get("artifacts") or []}
    task["execution"]["artifacts"] = [a for a in task["execution"]["artifacts"] if a["key"] not in keys]
    return {"deleted": len(keys)}


@endpoint("tasks.add_or_update_model")
def add_or_update_model(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    models = task["models"].setdefault(body["type"], [])
    models[:] = [m for m in models if m["name"] != body["name"]]
    models.append({"name": body["name"], "model": body["model"]})
    return {"updated": 1}


@endpoint("tasks.delete_models")
def delete_models(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    for item in body.get("models") or []:
        kind = task["models"].get(item["type"], [])
        kind[:] = [m for m in kind if m["name"] != item["name"]]
    return {"updated": 1}


@endpoint("tasks.started")
def started(state: StubState, body: dict) -> dict:
    return {**set_status(state.get("tasks", body.get("task")), "in_progress", body), "started": 1}


@endpoint("tasks.stopped")
def stopped(state: StubState, body: dict) -> dict:
    return set_status(state.get("tasks", body.get("task")), "stopped", body)


@endpoint("tasks.completed")
def completed(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    result = set_status(task, "completed", body)
    if body.get("publish"):
        set_status(task, "published", {"force": True})
    return result


@endpoint("tasks.failed")
def failed(state: StubState, body: dict) -> dict:
    return set_status(state.get("tasks", body.get("task")), "failed", body)


@endpoint("tasks.close")
def close(state: StubState, body: dict) -> dict:
    return set_status(state.get("tasks", body.get("task")), "closed", body)


@endpoint("tasks.publish")
def publish(state: StubState, body: dict) -> dict:
    return {
        **set_status(state.get("tasks", body.get("task")), "published", body),
        "committed_versions_results": [],
    }


@endpoint("tasks.ping")
def ping(state: StubState, body: dict) -> dict:
    state.get("tasks", body.get("task"))["last_worker_report"] = now()
    return {}


@endpoint("tasks.enqueue")
def enqueue(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    queue = _resolve_queue(state, body)
    task["enqueue_status"] = task["status"]
    result = set_status(task, "queued", body, allow_same=False)
    task["execution"]["queue"] = queue["id"]
    queue["entries"] = [e for e in queue["entries"] if e["task"] != task["id"]]
    queue["entries"].append({"task": task["id"], "added": now()})
    return {**result, "queued": 1}


def _resolve_queue(state: StubState, body: dict) -> dict:
    if body.get("queue"):
        return state.get("queues", body["queue"])
    if body.get("queue_name"):
        # Like the apiserver: enqueueing by name creates the queue when it does not exist.
        return state.queue_by_name(body["queue_name"]) or state.create_queue(body["queue_name"])
    default = next((q for q in state.queues.values() if "default" in q["system_tags"]), None)
    if default is None:
        raise ApiError("No queue given and no default queue defined", subcode=705)
    return default


@endpoint("tasks.dequeue")
def dequeue(state: StubState, body: dict) -> dict:
    # As the apiserver: only a queued or running task changes status, to ``new_status`` (the agent
    # sends in_progress) or back to the status it had before it was enqueued.
    task = state.get("tasks", body.get("task"))
    removed = _remove_from_queues(state, task["id"])
    if task["status"] not in ("queued", "in_progress"):
        return {"updated": 0, "dequeued": removed}
    new_status = body.get("new_status") or task.get("enqueue_status") or "created"
    result = set_status(task, new_status, {**body, "force": True})
    return {**result, "dequeued": removed}


def _remove_from_queues(state: StubState, task_id: str) -> int:
    removed = 0
    for queue in state.queues.values():
        before = len(queue["entries"])
        queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
        removed += before - len(queue["entries"])
    return removed


@endpoint("tasks.reset")
def reset(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    dequeued = _remove_from_queues(state, task["id"])
    result = set_status(task, "created", {"force": True, **body})
    task["execution"]["artifacts"] = [
        a for a in task["execution"].get("artifacts", []) if a.get("mode") == "input"
    ]
    task["models"]["output"] = []
    task["last_iteration"], task["last_metrics"] = 0, {}
    state.events[:] = [e for e in state.events if e.get("task") != task["id"]]
    return {**result, "dequeued": {"removed": dequeued}, "events": {}, "deleted_models": 0, "urls": {}}


@endpoint("tasks.clone")
def clone(state: StubState, body: dict) -> dict:
    source = state.get("tasks", body.get("task"))
    task = _new_task(
        {**copy.deepcopy(public_task(source)), "output_dest": source["output"].get("destination")}
    )
    overrides = {
        "name": "new_task_name",
        "comment": "new_task_comment",
        "tags": "new_task_tags",
        "system_tags": "new_task_system_tags",
        "parent": "new_task_parent",
        "project": "new_task_project",
        "hyperparams": "new_task_hyperparams",
        "configuration": "new_task_configuration",
        "container": "new_task_container",
    }
    for key, arg in overrides.items():
        if body.get(arg) is not None:
            task[key] = copy.deepcopy(body[arg])
    if body.get("new_project_name"):
        task["project"] = state.project_id(body["new_project_name"])
    task["execution"].update(body.get("execution_overrides") or {})
    task["execution"]["artifacts"] = [a for a in task["execution"]["artifacts"] if a.get("mode") == "input"]
    task["execution"].pop("queue", None)
    task["models"] = {"input": source["models"].get("input", []), "output": []}
    task["parent"] = task["parent"] or source["id"]
    # as clearml-server's TaskBLL.clone_task: no runtime properties (a cloned pipeline controller has no
    # run hash, so it runs its DAG afresh), and no development/archived system tags
    task["runtime"] = {}
    if body.get("new_task_system_tags") is None:
        task["system_tags"] = [t for t in source["system_tags"] if t not in ("development", "archived")]
    state.tasks[task["id"]] = task
    return {"id": task["id"], "new_project": None}


@endpoint("tasks.delete")
def delete(state: StubState, body: dict) -> dict:
    task = state.get("tasks", body.get("task"))
    _remove_from_queues(state, task["id"])
    state.tasks.pop(task["id"])
    # deleted is a bool in the schema (clearml backend_api services v2_23 tasks.DeleteResponse)
    return {"deleted": True, "updated_children": 0, "updated_models": 0, "events": {}, "urls": {}}


@endpoint("tasks.archive")
def archive(state: StubState, body: dict) -> dict:
    for task_id in body.get("tasks") or []:
        task = state.get("tasks", task_id)
        _remove_from_queues(state, task_id)
        task["system_tags"] = sorted(set(task["system_tags"]) | {"archived"})
    return {"archived": len(body.get("tasks") or [])}
