"""The prepared corpus as a ClearML Dataset version, around the task's step bodies (``table.py``).

Online, data_prep publishes the folder its body prepared (its output's ``corpus``: ``dataset/`` or
``text/``) as a version of dataset ``<task>-<data.source>`` in the project of the step's task
(``src/tracking/datasets.py``) and adds the version's id to its output. Every later step records the id
it was handed on its own task: user property ``dataset_id`` (a column of the experiments table) and, online,
the SDK's usage record ``Datasets/corpus``. tokenize reads the version's local copy when the data_prep
folder is not on its machine (an agent elsewhere). Offline the data stays in the run folder, and
``import-offline`` publishes it. ``data.source: clearml`` prepares a dataset a user uploaded with
``clearml-data``: its files are read as ``data.source: local`` reads a file (layout in ``uploaded_file``).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from src.data.sources import LOCAL_SUFFIXES  # the tables data.source: local reads
from src.tasks import StepContext

Output = dict[str, Any]
# what data.source=local reads, per task: a table (one row per example) or running text
TEXT_TASKS = ("language_modeling", "masked_lm")  # .txt files (src/data/prose.py read_local_text)


def dataset_name(cfg) -> str:
    """One dataset per task and source: its versions are the corpora those settings prepared."""
    return f"{cfg.task}-{cfg.data.source}"


def online(step: StepContext) -> bool:
    """Whether the step records to a ClearML server (not offline, not tracking off)."""
    from src.tracking import Tracker

    return isinstance(step.tracker, Tracker) and not step.tracker.offline


def prepare(step: StepContext, body: Callable[[StepContext], Output]) -> Output:
    """data_prep: the task's body on the configured data (for ``data.source: clearml``, the uploaded
    dataset's file), then, online, the prepared corpus published as a dataset version."""
    from src.tracking import PreparedCorpus, publish_corpus

    cfg = step.cfg
    output = body(read_uploaded_dataset(step) if cfg.data.source == "clearml" else step)
    if not online(step):
        return output
    # project None: the step task's own, where the pipeline (or tracking.project_name) put it; data_prep
    # may receive only the task and data sections
    corpus = PreparedCorpus(Path(output["data_dir"]) / output["corpus"], None, dataset_name(cfg),
                            output["corpus"])
    version = publish_corpus(corpus, description=f"{cfg.task} corpus prepared by data_prep "
                                                 f"({cfg.data.source})")
    return output | record_use(step, {"dataset_id": version.id})


def record_use(step: StepContext, *inputs: Output) -> dict[str, str]:
    """Record the corpus version the step's inputs came from on its task; ``{"dataset_id": id}`` for its
    output (empty when there is none: an offline run)."""
    dataset_id = next((i["dataset_id"] for i in inputs if i.get("dataset_id")), None)
    if dataset_id is None:
        return {}
    from src.tracking import record_dataset_use

    step.tracker.set_properties(dataset_id=dataset_id)
    if online(step):
        record_dataset_use(dataset_id)
    return {"dataset_id": dataset_id}


def local_corpus(step: StepContext, data: Output) -> Output:
    """tokenize: ``data`` with ``data_dir`` on this machine: the data_prep folder, else the local copy of the
    dataset version it published (which holds the corpus folder under the same name)."""
    corpus = data.get("corpus", "dataset")
    if not data.get("dataset_id") or (Path(data["data_dir"]) / corpus).exists() or not online(step):
        return data
    from src.tracking import fetch_dataset

    local, _ = fetch_dataset(dataset_id=data["dataset_id"])
    logger.info("data_dir={} not found here; using ClearML dataset {} at {}", data["data_dir"],
                data["dataset_id"], local)
    return data | {"data_dir": str(local)}


def read_uploaded_dataset(step: StepContext) -> StepContext:
    """``data.source: clearml``: the step with ``data`` reading the dataset's file as ``source: local``."""
    from src.config.data import parse_dataset_ref
    from src.tracking import fetch_dataset

    cfg = step.cfg
    if not online(step):
        raise ValueError(f"data.source='clearml' reads ClearML dataset {cfg.data.clearml_dataset!r} from a "
                         "server; this step runs offline (configure ClearML: README, 'Datasets')")
    root, dataset_id = fetch_dataset(alias="source", **parse_dataset_ref(cfg.data.clearml_dataset))
    step.tracker.set_properties(source_dataset_id=dataset_id)
    path = uploaded_file(root, cfg.task, cfg.data.local_path, f"ClearML dataset {dataset_id}")
    data = cfg.data.model_copy(update={"source": "local", "local_path": str(path)})
    return StepContext(step.name, cfg.model_copy(update={"data": data}), step.run_dir, step.tracker)


def uploaded_file(root: Path, task: str, local_path: str | None, what: str) -> Path:
    """The file (or, for the text tasks, folder) of an uploaded dataset that ``data.source: local`` reads.

    ``local_path`` (a path inside the dataset) names it; else the dataset must hold exactly one
    .tsv/.csv/.jsonl/.parquet file (translation, classification) or at least one .txt file (language
    modelling, masked LM: every .txt file is read). Anything else is a one-line error naming what it holds.
    """
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if local_path is not None:
        if (root / local_path).exists():
            return root / local_path
        raise ValueError(f"{what} has no {local_path!r} (data.local_path); it holds: {', '.join(files)}")
    if task in TEXT_TASKS:
        if any(f.endswith(".txt") for f in files):
            return root
        raise ValueError(f"{what} must hold .txt files for task={task!r} (or set data.local_path); "
                         f"it holds: {', '.join(files) or 'nothing'}")
    tables = [f for f in files if f.lower().endswith(LOCAL_SUFFIXES)]
    if len(tables) != 1:
        raise ValueError(f"{what} must hold exactly one {'/'.join(LOCAL_SUFFIXES)} file for task={task!r} "
                         "(or set data.local_path to one of them); it holds: "
                         f"{', '.join(files) or 'nothing'}")
    return root / tables[0]
