"""HTTP front of the stand-in: the apiserver's JSON envelope, and a files host for uploads/downloads.

Every request gets an answer: unknown or failing calls are HTTP 400 with an error envelope, since a
dropped connection (or a 502/503) sends the SDK into its retry loop for many minutes.
"""

import base64
import email.parser
import email.policy
import json
import traceback
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from loguru import logger

# Importing the endpoint modules registers their handlers.
from tests.clearml_stub import endpoints_other, endpoints_tasks  # noqa: F401
from tests.clearml_stub.endpoints_other import ACCESS_KEY, API_VERSION, SECRET_KEY, TOKEN_KEY
from tests.clearml_stub.state import ENDPOINTS, ApiError, StubState, new_id


def _envelope(name: str, code: int, msg: str, data: dict | None, subcode: int = 0, stack: str = "") -> bytes:
    meta = {
        "id": new_id(),
        "trx": new_id(),
        "endpoint": {"name": name, "requested_version": API_VERSION, "actual_version": API_VERSION},
        "result_code": code,
        "result_subcode": subcode,
        "result_msg": msg,
        "error_stack": stack,
    }
    return json.dumps({"meta": meta, "data": data or {}}).encode()


class _Handler(BaseHTTPRequestHandler):
    state: StubState  # set on the subclass made for each server

    def log_message(self, format: str, *args: object) -> None:
        pass  # the SDK polls a lot; keep test output readable

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, code: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class ApiHandler(_Handler):
    """``POST /[v2.x/]service.action`` with a JSON (or JSON-lines) body."""

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        name = url.path.strip("/").split("/")[-1]
        try:
            body = self._parse(self._body(), dict(parse_qsl(url.query)))
            self._check_auth(name)
            handler = ENDPOINTS.get(name)
            with self.state.lock:
                self.state.calls.append(name)
                if handler is None:
                    self.state.unknown_calls.append(name)
                    logger.warning("clearml stub: unknown endpoint {} (answered 400)", name)
                    raise ApiError(f"Unknown endpoint {name} (not implemented by the test stub)", subcode=2)
                data = handler(self.state, body)
            self._reply(200, _envelope(name, 200, "OK", data))
        except ApiError as err:
            self._reply(err.code, _envelope(name, err.code, err.msg, None, err.subcode))
        # A bug in the stub must still be an answer: a dropped connection sends the SDK into retries.
        except Exception as err:  # noqa: BLE001
            logger.exception("clearml stub: {} failed", name)
            self._reply(400, _envelope(name, 400, f"stub error: {err!r}", None, stack=traceback.format_exc()))

    do_GET = do_PUT = do_POST

    def _parse(self, raw: bytes, query: dict) -> dict:
        if not raw.strip():
            return query
        if "json-lines" in self.headers.get("Content-Type", ""):
            return {
                **query,
                "_lines": [json.loads(line) for line in raw.decode().splitlines() if line.strip()],
            }
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ApiError(f"Invalid JSON body: {err}") from err
        return {**query, **parsed} if isinstance(parsed, dict) else {**query, "_lines": parsed}

    def _check_auth(self, name: str) -> None:
        auth = self.headers.get("Authorization", "")
        if name == "auth.login" and auth.startswith("Basic "):
            key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            if (key, secret) != (ACCESS_KEY, SECRET_KEY):
                raise ApiError("Unauthorized (invalid credentials)", code=401, subcode=20)
        elif name not in ("debug.ping", "server.info"):
            try:
                jwt.decode(auth.removeprefix("Bearer "), TOKEN_KEY, algorithms=["HS256"])
            except jwt.PyJWTError as err:
                raise ApiError(
                    f"Unauthorized (invalid or missing token: {err})", code=401, subcode=20
                ) from err


class FilesHandler(_Handler):
    """The files host: multipart POST stores each part under ``<url path>/<part name>``; GET reads it."""

    def do_POST(self) -> None:
        prefix = unquote(urlsplit(self.path).path).strip("/")
        header = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + self._body())
        stored = []
        with self.state.lock:
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                key = "/".join(p for p in (prefix, name.strip("/")) if p)
                self.state.files[key] = part.get_payload(decode=True) or b""
                stored.append(key)
        if not stored:
            self._reply(400, b'{"error": "no multipart parts"}')
            return
        self._reply(200, json.dumps({"stored": stored}).encode())

    def do_GET(self) -> None:
        key = unquote(urlsplit(self.path).path).strip("/")
        with self.state.lock:
            content = self.state.files.get(key)
        if content is None:
            self._reply(404, json.dumps({"error": f"not found: {key}"}).encode())
        else:
            self._reply(200, content, "application/octet-stream")

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        key = unquote(urlsplit(self.path).path).strip("/")
        with self.state.lock:
            found = self.state.files.pop(key, None) is not None
        self._reply(200 if found else 404, b"{}")
