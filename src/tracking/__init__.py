"""The experiment-tracking adapter: the only package that imports clearml (and only on use).

One ``Tracker`` per pipeline step (one ClearML task); ``NullTracker`` when tracking is off.
Offline by default without a configured server; ``import_offline`` uploads the sessions later.
"""

from src.tracking.connection import clearml_configured, resolve_offline
from src.tracking.inputs import resolve_input
from src.tracking.null_tracker import NullTracker
from src.tracking.offline import find_offline_sessions, import_offline, import_offline_cli
from src.tracking.offline_session import OfflineSession, SessionImage, SessionModel, read_offline_session
from src.tracking.registry import published_model_metric
from src.tracking.resources import resource_usage
from src.tracking.tracker import Tracker, start_tracker

__all__ = [
    "NullTracker",
    "OfflineSession",
    "SessionImage",
    "SessionModel",
    "Tracker",
    "clearml_configured",
    "find_offline_sessions",
    "import_offline",
    "import_offline_cli",
    "published_model_metric",
    "read_offline_session",
    "resolve_input",
    "resolve_offline",
    "resource_usage",
    "start_tracker",
]
