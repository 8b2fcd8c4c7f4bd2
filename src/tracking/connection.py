"""Is a ClearML server configured, and can it be reached? Decides offline versus online.

Discovery follows the SDK (clearml/backend_config/defs.py, clearml 2.1.12): the host comes from
``CLEARML_API_HOST``; otherwise a config file, ``CLEARML_CONFIG_FILE`` if set, else ``~/clearml.conf``
(or the legacy ``~/trains.conf``). An agent runs tasks with its own configuration and sets
``CLEARML_TASK_ID``.
"""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def clearml_configured() -> bool:
    """True if the SDK would find a server configuration (env, config file, or running on an agent)."""
    if os.environ.get("CLEARML_API_HOST") or os.environ.get("TRAINS_API_HOST"):
        return True
    if os.environ.get("CLEARML_TASK_ID"):
        return True
    override = os.environ.get("CLEARML_CONFIG_FILE") or os.environ.get("TRAINS_CONFIG_FILE")
    if override:
        return Path(os.path.expandvars(override)).expanduser().is_file()
    home = Path.home()
    return (home / "clearml.conf").is_file() or (home / "trains.conf").is_file()


def offline_forced_by_env() -> bool:
    """``CLEARML_OFFLINE_MODE=1`` (the SDK's own switch) forces offline sessions."""
    return os.environ.get("CLEARML_OFFLINE_MODE", "").strip().lower() in _TRUE


def resolve_offline(offline: bool | None) -> bool:
    """``None`` means automatic: offline if forced by env or if no server is configured."""
    if offline is not None:
        return offline
    return offline_forced_by_env() or not clearml_configured()


def check_server_reachable(api_host: str, timeout_s: float) -> None:
    """Open one TCP connection to the API server, or raise ``ConnectionError`` within ``timeout_s``.

    ``Task.init`` against an unreachable host retries silently for many minutes (240 retries,
    backoff up to 120 s); this check turns that into an immediate, explained failure.
    """
    url = urlparse(api_host if "://" in api_host else f"http://{api_host}")
    if not url.hostname:
        raise ConnectionError(
            f"ClearML API host {api_host!r} is not a URL (expected e.g. http://localhost:8008)"
        )
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return
    except OSError as err:
        raise ConnectionError(
            f"ClearML server {api_host} is not reachable within {timeout_s:g} s ({err}). "
            "Start it, fix the configuration, or run offline (tracking.offline=true / --offline) "
            "and upload later with `python -m src.main import-offline <run_dir>`."
        ) from err
