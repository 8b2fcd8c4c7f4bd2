"""uvicorn's h11 protocol with a deadline for receiving each request: slow clients are timed out.

uvicorn (0.55) bounds the idle time between requests (``timeout_keep_alive``) and the size of the
request line and headers (``h11_max_incomplete_event_size``), but not the time a request takes to
arrive: its keep-alive timer is cancelled by the first byte received, so a client that sends part
of its headers, or its headers and part of a body, and then stalls holds its connection (and, with
a body, a request task) forever: the slowloris attack. (uvicorn's issue #157 proposed a
``--timeout-request-start``; 0.55 has none.)

``DeadlineH11Protocol`` arms a timer when a connection opens and when the first byte of a later
request arrives; the timer is disarmed once the whole request (headers and body) is in. If it
fires first, the client gets a JSON 408 when no answer has started, the connection is closed, and
one INFO line says so: the protocol's own when the headers never completed, else the request's
line (``src/serving/request_log.py``, status 408).
"""

import json
from http import HTTPStatus
from typing import Any

import h11
from loguru import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

from src.serving.request_log import TIMED_OUT


def deadline_protocol(request_timeout_s: float) -> type[H11Protocol]:
    """The protocol class to hand ``uvicorn.Config(http=...)``, with this deadline per request."""

    class DeadlineH11Protocol(H11Protocol):
        request_timeout = request_timeout_s

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deadline_task = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is a stalled request too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.deadline_task is None and self.conn.their_state is h11.IDLE:  # a new request begins
                self._arm()
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the whole request is in (or over)
                self._disarm()

        def send_400_response(self, msg: str) -> None:
            """h11 refused the bytes (malformed, or headers over ``h11_max_incomplete_event_size``): JSON, as
            every error."""
            limit = self.config.h11_max_incomplete_event_size
            self.transport.write(raw_json_response(400, "invalid HTTP request: malformed, or its request "
                                                        f"line and headers are over the limit of {limit} "
                                                        "bytes"))
            self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self.deadline_task = self.loop.call_later(self.request_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self.deadline_task is not None:
                self.deadline_task.cancel()
                self.deadline_task = None

        def _timed_out(self) -> None:
            self.deadline_task = None
            if self.transport.is_closing():
                return
            message = f"no complete request within {self.request_timeout:g} s; the connection is closed"
            in_app = (self.cycle is not None and not self.cycle.response_complete
                      and self.conn.their_state is h11.SEND_BODY)
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer started: say why, then close
                self.transport.write(raw_json_response(408, message))
            if in_app:  # the app waits for the body: its request line says 408 (it sees a disconnect)
                self.cycle.scope["state"][TIMED_OUT] = True
            else:
                client = "%s:%d" % self.client if self.client else "a client"
                logger.info("connection from {} timed out: {} (408)", client, message)
            self.transport.close()

    return DeadlineH11Protocol


def raw_json_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 JSON error answer as bytes, written past h11 (with the headers incomplete it allows
    none)."""
    body = json.dumps({"error": message, "request_id": None}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body
