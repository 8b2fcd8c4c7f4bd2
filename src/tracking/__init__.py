"""The experiment-tracking adapter: with ``src.orchestration``, the only package that imports clearml
(and only on use: importing this surface needs neither clearml nor a server).

One ``Tracker`` per pipeline step (one ClearML task); ``NullTracker`` when tracking is off; both
implement ``TrackerLike``. Offline by default without a configured server; ``import_offline``
uploads the sessions later, ``keep_interrupted_sessions`` zips those a killed step left open.
``publish_corpus`` and ``fetch_dataset`` version the prepared data as ClearML Datasets.
"""

from src.tracking.connection import (
    check_server_reachable,
    clearml_configured,
    offline_forced_by_env,
    resolve_offline,
)
from src.tracking.datasets import (
    DatasetNotFoundError,
    DatasetVersion,
    PreparedCorpus,
    fetch_dataset,
    publish_corpus,
    record_dataset_use,
)
from src.tracking.edited import changed_leaves, held_values
from src.tracking.inputs import resolve_input
from src.tracking.null_tracker import NullTracker
from src.tracking.offline import find_offline_sessions, import_offline
from src.tracking.protocol import TrackerLike
from src.tracking.recovery import keep_interrupted_sessions
from src.tracking.session_record import SessionModel, SessionRecord, is_offline_session, read_session_record
from src.tracking.tracker import Tracker, start_tracker

__all__ = [
    "DatasetNotFoundError",
    "DatasetVersion",
    "NullTracker",
    "PreparedCorpus",
    "SessionModel",
    "SessionRecord",
    "Tracker",
    "TrackerLike",
    "changed_leaves",
    "check_server_reachable",
    "clearml_configured",
    "fetch_dataset",
    "find_offline_sessions",
    "held_values",
    "import_offline",
    "is_offline_session",
    "keep_interrupted_sessions",
    "offline_forced_by_env",
    "publish_corpus",
    "read_session_record",
    "record_dataset_use",
    "resolve_input",
    "resolve_offline",
    "start_tracker",
]
