"""The ClearML server as seen from this project: a fast login check, and the agents' queues.

``check_server`` runs before anything else touches the server. The SDK, given keys and an
unreachable host, retries silently for many minutes; this check answers within seconds with
what to fix instead.
"""

import re
from dataclasses import dataclass

import jwt
import requests
from loguru import logger

_SETUP_HINT = (
    "Run `clearml-init` (writes ~/clearml.conf), or set CLEARML_API_HOST, CLEARML_WEB_HOST, "
    "CLEARML_FILES_HOST, CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY "
    "(see queues/clearml.conf.example); CLEARML_CONFIG_FILE points at another config file."
)


class ServerError(RuntimeError):
    """The ClearML server cannot be used; the message says what to check."""


class ServerUnreachableError(ServerError):
    """No answer from the configured API server within the timeout."""


class ServerMisconfiguredError(ServerError):
    """The server answered but refused us, or the configuration is incomplete."""


@dataclass(frozen=True)
class ServerInfo:
    api_url: str
    web_url: str | None
    files_url: str | None
    api_version: str | None
    server_version: str | None


@dataclass(frozen=True)
class _Settings:
    api_url: str | None
    web_url: str | None
    files_url: str | None
    access_key: str | None
    secret_key: str | None
    auth_token: str | None
    verify: bool | str


def _read_settings() -> _Settings:
    """Host and credentials exactly as the SDK resolves them (env first, then clearml.conf); no network."""
    from clearml.backend_api.session import Session
    from clearml.backend_api.session.defs import (
        ENV_ACCESS_KEY,
        ENV_AUTH_TOKEN,
        ENV_FILES_HOST,
        ENV_HOST,
        ENV_HOST_VERIFY_CERT,
        ENV_SECRET_KEY,
    )
    from clearml.config import config_obj

    try:
        config_api = config_obj.get("api.api_server", None) or config_obj.get("api.host", None)
        api_url = ENV_HOST.get(default=config_api)
        web_url = files_url = None
        if api_url:
            # The SDK derives unset web/files hosts from the API host; for a custom host it cannot
            # (ValueError), and only links and uploads need them, not this check.
            try:
                web_url = Session.get_app_server_host(config_obj)
                files_url = Session.get_files_server_host(config_obj)
            except ValueError:
                files_url = ENV_FILES_HOST.get(default=config_obj.get("api.files_server", None))
        return _Settings(
            api_url=api_url.rstrip("/") if api_url else None,
            web_url=web_url,
            files_url=files_url,
            access_key=ENV_ACCESS_KEY.get(default=config_obj.get("api.credentials.access_key", None)),
            secret_key=ENV_SECRET_KEY.get(default=config_obj.get("api.credentials.secret_key", None)),
            auth_token=ENV_AUTH_TOKEN.get(),
            verify=_verify_setting(
                ENV_HOST_VERIFY_CERT.get(default=config_obj.get("api.verify_certificate", True))
            ),
        )
    except Exception as err:  # a malformed clearml.conf surfaces here, as pyhocon or IO errors
        raise ServerMisconfiguredError(
            f"Could not read the ClearML configuration: {err}. {_SETUP_HINT}"
        ) from err


def _verify_setting(value: object) -> bool | str:
    """``requests``' ``verify``: a bool, or a CA bundle path (an env var arrives as text)."""
    text = str(value).strip().lower()
    if text in ("0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on", ""):
        return True
    return str(value)


def check_server(timeout: float = 5.0) -> ServerInfo:
    """Log in to the configured API server with one plain HTTP request, no retries.

    Raises:
        ServerMisconfiguredError: no host or keys configured, keys rejected, or the URL is not an API server.
        ServerUnreachableError: no answer within ``timeout`` seconds (per connect and per read).
    """
    settings = _read_settings()
    if not settings.api_url:
        raise ServerMisconfiguredError(f"No ClearML API server is configured. {_SETUP_HINT}")
    if not settings.auth_token and not (settings.access_key and settings.secret_key):
        raise ServerMisconfiguredError(
            f"No ClearML credentials for {settings.api_url} (access_key/secret_key missing). {_SETUP_HINT}"
        )
    url = f"{settings.api_url}/auth.login"
    auth = None if settings.auth_token else (settings.access_key, settings.secret_key)
    headers = {"Authorization": f"Bearer {settings.auth_token}"} if settings.auth_token else {}
    try:
        response = requests.post(
            url, auth=auth, headers=headers, timeout=(timeout, timeout), verify=settings.verify
        )
    except requests.exceptions.SSLError as err:
        raise ServerMisconfiguredError(
            f"TLS error talking to {settings.api_url}: {err}. Check the certificate, or set "
            "api.verify_certificate / CLEARML_API_HOST_VERIFY_CERT for a self-signed one."
        ) from err
    except requests.exceptions.RequestException as err:
        raise ServerUnreachableError(
            f"ClearML API server {settings.api_url} did not answer within {timeout:g} s "
            f"({type(err).__name__}). "
            "Check that the server is running and reachable from this machine (VPN, firewall, port 8008 for "
            "a self-hosted server) and that api_server is the API URL, not the web app URL."
        ) from err
    return _server_info(settings, response)


def _server_info(settings: _Settings, response: requests.Response) -> ServerInfo:
    if response.status_code == 401:
        raise ServerMisconfiguredError(
            f"ClearML API server {settings.api_url} rejected the credentials (HTTP 401). Check "
            "api.credentials in clearml.conf or CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY "
            "(create keys in the web app: Settings > Workspace > Create new credentials)."
        )
    try:
        token = response.json()["data"]["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as err:
        raise ServerMisconfiguredError(
            f"{settings.api_url} answered HTTP {response.status_code} without a ClearML login token: is this "
            "the API server (usually port 8008 or https://api.<domain>), not the web app or files server?"
        ) from err
    info = ServerInfo(
        api_url=settings.api_url,
        web_url=settings.web_url,
        files_url=settings.files_url,
        api_version=claims.get("api_version"),
        server_version=claims.get("server_version"),
    )
    logger.info(
        "ClearML server {} is up (server {}, API {})", info.api_url, info.server_version, info.api_version
    )
    return info


def ensure_queues(names: list[str], timeout: float = 5.0) -> dict[str, str]:
    """Create the queues that do not exist yet; return ``{name: queue id}`` for all of ``names``.

    Idempotent: a second call creates nothing. Runs ``check_server`` first so an unreachable
    server fails in seconds rather than in the SDK's retry loop.
    """
    check_server(timeout)
    from clearml.backend_api.session.client import APIClient

    client = APIClient()
    ids = {}
    for name in names:
        found = client.queues.get_all(name=f"^{re.escape(name)}$", only_fields=["id", "name"])
        exact = [q for q in found if q.name == name]
        if exact:
            ids[name] = exact[0].id
            continue
        ids[name] = client.queues.create(name=name).id
        logger.info("created ClearML queue {} ({})", name, ids[name])
    return ids
