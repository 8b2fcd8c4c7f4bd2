"""ClearML Datasets: the prepared corpus as a versioned dataset, and the datasets users upload.

``publish_corpus`` makes a folder a version of one ClearML Dataset. The same content (its SHA-256, kept
as the version's tag ``content:<hash>``) reuses the finalized version that holds it; other content becomes
a new version whose parent is the latest one, so the dataset's page in the web UI shows the lineage.
``fetch_dataset`` gives the local copy of a version (by id, or project, name and version) and records on
the running task that it used it (``Dataset.get(alias=...)``: the task's ``Datasets/<alias>`` parameter
and its ``datasets`` runtime property). Everything here needs a server: offline, the data stays in the
run folder and ``import_offline`` publishes it (``link_session_to_dataset`` writes the same records into
the sessions before they are imported).
"""

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger

CONTENT_TAG = "content:"  # + the SHA-256 of the files: how the same content finds its version again
USE_ALIAS = "corpus"  # a task's "Datasets/corpus" parameter: which version of the prepared corpus it used
PROPERTY = "dataset_id"  # the user property (a column of the experiments table) with the same id
FINAL = ("completed", "published", "closed")  # a finalized version; "stopped" is an aborted upload


@dataclass(frozen=True)
class PreparedCorpus:
    """What a run's data_prep step prepared (``folder``), and the dataset it is a version of."""

    folder: Path
    project: str | None  # None: the project of the task running now (a pipeline step's, where it put it)
    name: str
    dataset_path: str  # the folder's name inside the dataset: a local copy holds it, as the run folder does


@dataclass(frozen=True)
class DatasetVersion:
    id: str
    version: str | None
    reused: bool  # an existing version held the same content
    parent: str | None = None  # the version a new one derives from (None: the first version, or reused)


class DatasetNotFoundError(LookupError):
    """No finalized ClearML dataset matches the reference."""


def content_hash(folder: Path) -> str:
    """SHA-256 over every file's path (relative to ``folder``) and content, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        file_digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


def finalized_versions(project: str, name: str) -> list[dict[str, Any]]:
    """The finalized versions of dataset ``project/name``, oldest first (``Dataset.list_datasets`` rows)."""
    from clearml import Dataset

    rows = Dataset.list_datasets(dataset_project=project, partial_name=f"^{re.escape(name)}$",
                                 only_completed=True, recursive_project_search=False, include_archived=False)
    mine = [r for r in rows if (r["name"], r["project"]) == (name, project) and str(r["status"]) in FINAL]
    return sorted(mine, key=lambda r: r["created"])


def publish_corpus(corpus: PreparedCorpus, description: str = "") -> DatasetVersion:
    """``corpus.folder`` as a version of dataset ``corpus.project/corpus.name``: the version that holds the
    same content, else a new one whose parent is the latest version.

    Called inside a step's task, the new version's task is a child of it (``Dataset.create`` does that).
    """
    from clearml import Dataset, Task

    if not corpus.folder.is_dir():
        raise FileNotFoundError(f"no prepared corpus to publish at {corpus.folder}")
    if corpus.project is None:
        corpus = replace(corpus, project=Task.current_task().get_project_name())
    tag = CONTENT_TAG + content_hash(corpus.folder)
    versions = finalized_versions(corpus.project, corpus.name)
    same = [v for v in versions if tag in (v["tags"] or [])]
    if same:
        logger.info("dataset {}/{}: version {} ({}) already holds this content", corpus.project, corpus.name,
                    same[-1]["version"], same[-1]["id"])
        return DatasetVersion(same[-1]["id"], same[-1]["version"], reused=True)
    parent = versions[-1]["id"] if versions else None
    # an object, not an id: Dataset.create would otherwise Dataset.get() the parent, which records it
    # as a dataset the current task used; "_dont_populate_runtime_props" is the SDK's switch for that
    parents = None
    if parent:
        quiet = {"silence_alias_warnings": True, "_dont_populate_runtime_props": True}
        parents = [Dataset.get(dataset_id=parent, **quiet)]
    dataset = Dataset.create(dataset_name=corpus.name, dataset_project=corpus.project, dataset_tags=[tag],
                             parent_datasets=parents, description=description or None)
    # sync, not add: a file the parent holds and this content lacks is removed from the new version
    dataset.sync_folder(local_path=str(corpus.folder), dataset_path=corpus.dataset_path)
    dataset.upload()
    dataset.finalize()
    logger.info("dataset {}/{}: new version {} ({}){}", corpus.project, corpus.name, dataset.version,
                dataset.id, f", parent {parent}" if parent else "")
    return DatasetVersion(dataset.id, dataset.version, reused=False, parent=parent)


def fetch_dataset(*, alias: str = USE_ALIAS, dataset_id: str | None = None,
                  dataset_project: str | None = None, dataset_name: str | None = None,
                  dataset_version: str | None = None) -> tuple[Path, str]:
    """A read-only local copy of a finalized dataset version and its id; the running task records that it
    used it, as ``Datasets/<alias>``. Without an id: ``dataset_project/dataset_name`` at ``dataset_version``
    (None: the latest)."""
    from clearml import Dataset

    wanted = dataset_id or f"{dataset_project}/{dataset_name}@{dataset_version or 'latest'}"
    try:
        dataset = Dataset.get(dataset_id=dataset_id, dataset_project=dataset_project,
                              dataset_name=dataset_name, dataset_version=dataset_version,
                              only_completed=dataset_id is None, alias=alias)
    except ValueError as err:  # the SDK's "Could not find Dataset ..." and "... is not a Dataset ID"
        raise DatasetNotFoundError(f"no finalized ClearML dataset {wanted!r} ({err})") from None
    return Path(dataset.get_local_copy()), dataset.id


def record_dataset_use(dataset_id: str, alias: str = USE_ALIAS) -> None:
    """The SDK's usage record on the running task (``Datasets/<alias>``, the ``datasets`` runtime
    property), without downloading the version."""
    from clearml import Dataset

    Dataset.get(dataset_id=dataset_id, alias=alias)


def link_session_to_dataset(task: dict[str, Any], dataset_id: str, alias: str = USE_ALIAS) -> None:
    """Write into an offline session's ``task.json`` what an online step records of the version it used:
    the ``dataset_id`` user property, and ``Dataset.get(alias=...)``'s ``Datasets/<alias>`` parameter and
    ``datasets`` runtime property (the importer sends them with the task)."""
    params = task.get("hyperparams") or {}
    for section, name in (("properties", PROPERTY), ("Datasets", alias)):
        params.setdefault(section, {})[name] = {"section": section, "name": name, "value": dataset_id,
                                                "type": "str", "description": ""}
    task["hyperparams"] = params
    runtime = task.get("runtime") or {}
    runtime["datasets"] = sorted({*runtime.get("datasets", []), dataset_id})
    task["runtime"] = runtime
