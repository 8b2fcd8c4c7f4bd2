"""In-memory state of the stand-in ClearML server, and the endpoint registry that acts on it."""

import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]
Handler = Callable[["StubState", Body], dict[str, Any]]

ENDPOINTS: dict[str, Handler] = {}


def endpoint(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``service.action`` names; it returns the envelope's ``data``."""

    def register(handler: Handler) -> Handler:
        for name in names:
            ENDPOINTS[name] = handler
        return handler

    return register


class ApiError(Exception):
    """Answered as an error envelope (HTTP ``code``), never as a dropped connection."""

    def __init__(self, msg: str, code: int = 400, subcode: int = 0) -> None:
        super().__init__(msg)
        self.msg, self.code, self.subcode = msg, code, subcode


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class StubState:
    """Everything the stand-in server knows. Handlers run one at a time under ``lock``."""

    projects: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    queues: dict[str, dict] = field(default_factory=dict)
    workers: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    unknown_calls: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def get(self, collection: str, obj_id: str | None) -> dict:
        """The object or a 400 naming what is missing (the real server answers 400 too)."""
        items = getattr(self, collection)
        if not obj_id or obj_id not in items:
            raise ApiError(f"Invalid {collection[:-1]} id: id={obj_id}", subcode=101)
        return items[obj_id]

    def queue_by_name(self, name: str) -> dict | None:
        return next((q for q in self.queues.values() if q["name"] == name), None)

    def create_queue(self, name: str, tags: list | None = None, system_tags: list | None = None) -> dict:
        if self.queue_by_name(name):
            raise ApiError(f"Queue with this name already exists: name={name}", subcode=702)
        queue = {
            "id": new_id(),
            "name": name,
            "display_name": name,
            "created": now(),
            "tags": list(tags or []),
            "system_tags": list(system_tags or []),
            "entries": [],
            "metadata": {},
        }
        self.queues[queue["id"]] = queue
        return queue

    def project_id(self, name: str) -> str:
        """Id of the project called ``name``, created with its parents if missing."""
        for project in self.projects.values():
            if project["name"] == name:
                return project["id"]
        project = {
            "id": new_id(),
            "name": name,
            "basename": name.rsplit("/", 1)[-1],
            "created": now(),
            "tags": [],
            "system_tags": [],
            "description": "",
        }
        self.projects[project["id"]] = project
        return project["id"]


def matches_tags(values: Iterable[str], wanted: list[str] | None) -> bool:
    """The apiserver's list-field filter (clearml-server ``GetMixin.NewListFieldBucketHelper``).

    ``__$all``/``__$and`` and ``__$any``/``__$or`` set the operator of the values after them (default:
    any), ``__$not`` negates the one value after it, a ``-tag`` (legacy) excludes. Per operator, included
    values must all be there (all) or one of them (any); excluded ones must not all be there (all) or
    none of them (any). The first operator combines those conditions.
    """
    if not wanted:
        return True
    values = set(values or ())
    operator, first, negate = "any", None, False
    actions: dict[tuple[str, bool], list[str]] = {}
    for term in wanted:
        if term in ("__$all", "__$and", "__$any", "__$or"):
            operator = "all" if term in ("__$all", "__$and") else "any"
            first = first or operator
            continue
        if term in ("__$not", "__$nop"):
            negate = term == "__$not"
            continue
        include = not negate and not term.startswith("-")
        value = term if not term.startswith("-") or negate else term[1:]
        negate, first = False, first or operator
        actions.setdefault((operator, include), []).append(value)
    checks = {("all", True): lambda vs: values.issuperset(vs),
              ("all", False): lambda vs: not values.issuperset(vs),
              ("any", True): lambda vs: bool(values.intersection(vs)),
              ("any", False): lambda vs: not values.intersection(vs)}
    results = [checks[key](vs) for key, vs in actions.items()]
    return all(results) if first == "all" else any(results) if results else True


def _field(obj: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def visible(items: Iterable[dict], body: Body) -> list[dict]:
    """What ``projects.get_all`` and ``tasks.get_all`` search (the apiserver's ``_hidden_query``): items with
    the ``hidden`` system tag (datasets' and pipelines' projects) only with ``search_hidden`` or ids."""
    if body.get("search_hidden") or body.get("id"):
        return list(items)
    return [item for item in items if "hidden" not in (item.get("system_tags") or [])]


def select(items: Iterable[dict], body: Body, name_key: str = "name") -> list[dict]:
    """Filter, order and page a collection the way ``*.get_all`` / ``*.get_all_ex`` do."""
    ids = body.get("id")
    ids = [ids] if isinstance(ids, str) else ids
    found = []
    for item in items:
        if ids and item["id"] not in ids:
            continue
        name = body.get(name_key)
        if name and not re.search(name, item.get(name_key) or "", flags=re.IGNORECASE):
            continue
        if not matches_tags(item.get("tags", []), body.get("tags")):
            continue
        if not matches_tags(item.get("system_tags", []), body.get("system_tags")):
            continue
        if not _matches_fields(item, body):
            continue
        if not _matches_pattern(item, body.get("_all_"), all) or not _matches_pattern(item, body.get("_any_"),
                                                                                      any):
            continue
        found.append(item)
    for key in reversed(body.get("order_by") or []):
        desc = key.startswith("-")
        key = key.lstrip("-+")
        found.sort(key=lambda it, k=key: str(_field(it, k) or ""), reverse=desc)
    return _page(found, body)


def _matches_fields(item: dict, body: Body) -> bool:
    for key in ("project", "status", "type", "parent", "framework", "task", "ready", "user"):
        wanted = body.get(key)
        if wanted is None or wanted == []:
            continue
        wanted = wanted if isinstance(wanted, list) else [wanted]
        value = item.get(key)
        if key == "project" and None in wanted and value is None:
            continue
        if value not in wanted:
            return False
    return True


def _matches_pattern(item: dict, spec: dict | None, combine: Callable[[Iterable[bool]], bool]) -> bool:
    """``_all_`` / ``_any_``: ``{"fields": [dotted names], "pattern": regex}``, every / some field matching.

    The SDK's step cache looks up ``runtime.pipeline_job_hash`` this way (clearml ``automation/job.py``).
    """
    if not spec or not spec.get("pattern") or not spec.get("fields"):
        return True
    pattern = re.compile(spec["pattern"], flags=re.IGNORECASE)
    return combine(
        (value := _field(item, name)) is not None and bool(pattern.search(str(value)))
        for name in spec["fields"]
    )


def _page(found: list[dict], body: Body) -> list[dict]:
    """``page``/``page_size`` paging; ``size`` with ``scroll_id`` is answered as one full page."""
    page, page_size = body.get("page"), body.get("page_size")
    if page is not None and page_size:
        return found[page * page_size : (page + 1) * page_size]
    if body.get("scroll_id"):
        return []  # everything went out with the first scroll page
    return found
