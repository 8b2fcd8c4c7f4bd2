"""Model lineage across offline sessions: which server model an offline session's model became.

``import_offline`` notes beside each session it imports the server, task and model ids it got
(``<session>.imported.json``). A task whose weights started from such a model (``model.init_from`` of a
run trained offline) names the source model by its offline id; the note turns that into the server's id,
so the imported fine-tuning task is linked to the imported pretraining model when the pretraining run was
imported into the same server before (or in the same import).
"""

import json
from pathlib import Path
from typing import Any

IMPORTED_SUFFIX = ".imported.json"


def imported_record_path(session_path: Path) -> Path:
    """Where ``import_offline`` notes what a session became on a server (beside the zip or folder)."""
    session_path = Path(session_path)
    return session_path.with_name(session_path.name.removesuffix(".zip") + IMPORTED_SUFFIX)


def server_model_id(source: dict[str, Any], known: dict[str, str] | None = None) -> str | None:
    """The server id of input model ``source`` (``Tracker.set_input_model``): its own id if it is one;
    for an offline model, the id it got when its session was imported (in this import, ``known``, or an
    earlier one into this server, noted beside its session); None if it was never imported here."""
    model_id = str(source.get("model_id") or "")
    if model_id and not model_id.startswith("offline-"):
        return model_id
    if known and model_id in known:
        return known[model_id]
    session = source.get("session")
    record = imported_record_path(Path(session)) if session else None
    if record is None or not record.is_file():
        return None
    from clearml.backend_api import Session

    noted = json.loads(record.read_text(encoding="utf-8"))
    if noted.get("server") != Session.get_api_server_host():
        return None  # imported into another server
    return noted.get("models", {}).get(model_id)
