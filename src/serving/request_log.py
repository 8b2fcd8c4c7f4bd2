"""Per-request middleware: a request id, the declared body size checked, one structured log line.

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
runs every request through an extra task and memory streams, a cost paid per request.

The endpoint leaves what the log needs in ``scope["state"]`` (``request.state``): ``n_texts``,
``batch`` (a ``BatchInfo``) and ``disconnected`` (the client went away before its answer: logged
as such, at INFO, with status 499, nginx's "client closed request").

An unexpected error is logged with a bounded traceback (its last ``TRACEBACK_FRAMES`` frames, no
local variables): the server log stays readable under any load.
"""

import json
import re
import time
import traceback
import uuid

from loguru import logger
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CLIENT_GONE = 499  # not sent (nobody is there to read it): the status the log line shows
# set in scope["state"] by src/serving/protocol.py when its deadline closed the request
TIMED_OUT = "timed_out"
TRACEBACK_FRAMES = 12
# a refused body is still read (and discarded) up to this size before the answer: a server that answers and
# closes with unread bytes in its receive buffer sends a TCP RST, and the client may lose the 413 to it
DRAIN_LIMIT_BYTES = 32 * 1024 * 1024


class RequestLog:
    """Adds ``X-Request-ID`` (the client's, if sane) and ``X-Batch``; refuses a declared body over the limit
    (413) and a request line and headers over theirs (431).

    Args:
        app: the ASGI app inside.
        max_body_bytes: the largest ``Content-Length`` let through (chunked bodies: ``app.read_json``).
        max_header_bytes: the largest request line and headers let through. h11 enforces it only on
            headers that arrive in pieces (``h11_max_incomplete_event_size``); this catches those that
            arrive whole.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, n_texts=None, batch=None, disconnected=False)
        start, status, started = time.perf_counter(), 500, False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                # requests/texts in its model call (for clients and the bench)
                if state.get("batch") is not None:
                    out["X-Batch"] = f"{state['batch'].requests}/{state['batch'].inputs}"
            await send(message)

        declared = headers.get(b"content-length", b"")
        header_bytes = len(scope.get("raw_path", b"")) + len(scope["query_string"]) + sum(
            len(name) + len(value) + 4 for name, value in scope["headers"])  # "name: value\r\n"
        try:
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await drain(receive, DRAIN_LIMIT_BYTES)
                await send_json(send_with_headers, 413,
                                f"request body of {int(declared)} bytes is over the limit "
                                f"of {self.max_body_bytes} bytes", request_id)
            elif header_bytes > self.max_header_bytes:
                await drain(receive, DRAIN_LIMIT_BYTES)
                await send_json(send_with_headers, 431,
                                f"request line and headers of about {header_bytes} bytes are "
                                f"over the limit of {self.max_header_bytes} bytes", request_id)
            else:
                await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:  # gone while its body was read: nothing to answer, nothing went wrong here
            state["disconnected"] = True
        except Exception as err:
            logger.error("request {} failed: {}", request_id, bounded_traceback(err))
            if started:  # too late for another answer: the connection is cut
                raise
            await send_json(send_with_headers, 500,
                            "internal error; the server logged it under this request id",
                            request_id)
        finally:
            log(scope, state, status, start)


async def drain(receive: Receive, limit: int, seen: int = 0) -> None:
    """Read and discard the rest of a request body, up to ``limit`` bytes in all (``seen`` read already)."""
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":  # the client has gone
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_json(send: Send, status: int, message: str, request_id: str) -> None:
    body = json.dumps({"error": message, "request_id": request_id}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def bounded_traceback(err: BaseException) -> str:
    """``err`` (and its causes) with the last ``TRACEBACK_FRAMES`` frames that led to each, without local
    variables."""
    lines = traceback.format_exception(err, limit=-TRACEBACK_FRAMES)  # each chained cause bounded alike
    return "".join(lines).rstrip()


def log(scope: Scope, state: dict, status: int, start: float) -> None:
    if state.get(TIMED_OUT):
        status = 408
    elif state.get("disconnected"):
        status = CLIENT_GONE
    batch = state.get("batch")
    fields = {"request_id": state["request_id"], "method": scope["method"], "path": scope["path"],
              "status": status,
              "n_texts": state.get("n_texts"), "latency_ms": round((time.perf_counter() - start) * 1000, 2),
              "batch_requests": batch and batch.requests, "batch_inputs": batch and batch.inputs}
    why = {CLIENT_GONE: "client disconnected before its answer ",
           408: "request not received in time, closed "}
    logger.bind(**fields).info("{method} {path} {status} " + why.get(status, "") + "id={request_id} "
                                                                                   "texts={n_texts} "
                               "latency={latency_ms} ms batch={batch_requests} requests/{batch_inputs} texts",
                               **fields)
