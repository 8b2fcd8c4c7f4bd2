"""The FastAPI app: endpoints, body parsing and limits, JSON errors.

Every request gets an ``X-Request-ID`` (the client's, if it sent one) and one structured log
line (``src/serving/request_log.py``). Every error body is JSON ``{"error": message, "request_id": id}``.
Bad input of any kind is a 4xx (``src/serving/validation.py``); a client that disconnects is one
INFO line; a model output that is not finite is a 500 naming it, never NaN in an answer.
"""

import json
import math
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from src.serving.batching import MicroBatcher, ShuttingDown
from src.serving.predictor import FAMILIES_OF, NonFiniteOutput, Preprocess
from src.serving.request_log import CLIENT_GONE, DRAIN_LIMIT_BYTES, RequestLog
from src.serving.validation import BadRequest, parse_json

ENDPOINTS = {"/v1/translate": "translate", "/v1/classify": "classify", "/v1/generate": "generate"}


def create_app(predictor: Preprocess, source: dict[str, Any] | None = None) -> FastAPI:
    """The app serving ``predictor``'s loaded model.

    Args:
        predictor: a loaded ``Preprocess``; its ``config`` holds the limits and the batching.
        source: where the model came from, for ``/v1/model`` (checkpoint, run, metrics, ClearML model).
    """
    config = predictor.config
    batcher = MicroBatcher(predictor.process_batch, config.batch_window_ms, config.max_batch_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.close()  # uvicorn has let the requests in flight finish; anything queued runs first

    app = FastAPI(title="stepwise-transformers", lifespan=lifespan)
    app.state.batcher = batcher

    app.add_middleware(RequestLog, max_body_bytes=config.max_body_bytes,
                       max_header_bytes=config.max_header_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail
        if exc.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}; expected one of {endpoint_list()}"
        elif exc.status_code == 405:
            message = (f"{request.method} is not allowed on {request.url.path}; "
                       f"expected one of {endpoint_list()}")
        return error(request, exc.status_code, str(message))

    @app.get("/health")
    async def health(request: Request) -> Any:
        # the model can no longer be reached: a load balancer should stop sending
        if batcher.failure is not None:
            return JSONResponse({"status": "unavailable", "error": batcher.failure,
                                 "family": predictor.trained.family,
                                 "request_id": getattr(request.state, "request_id", None)}, status_code=503)
        return {"status": "ok", "family": predictor.trained.family}

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        return {**predictor.describe(), **(source or {}), "serving": config.model_dump()}

    async def serve(request: Request, task: str) -> Response:
        try:
            # the body is read before anything is answered, also a 409: an answer that leaves bytes unread
            # can be lost to a TCP reset (see request_log.py)
            body = await read_json(request, config.max_body_bytes)
            if predictor.task != task:
                return error(request, 409,
                             f"the loaded model is of family {predictor.trained.family}, served at "
                                           f"/v1/{predictor.task}; /v1/{task} needs a model of family "
                                           f"{' or '.join(FAMILIES_OF[task])}")
            state: dict[str, Any] = {}
            job = predictor.preprocess(body, state)
            request.state.n_texts = job.size
            outputs, request.state.batch = await batcher.submit(job)
            answer = predictor.postprocess(outputs, state)
            check_answer(answer)
        except BadRequest as err:
            return error(request, err.status, str(err))
        except ShuttingDown as err:
            return error(request, 503, str(err))
        except ClientDisconnect:  # gone while sending its body: nobody to answer (request_log logs one line)
            request.state.disconnected = True
            return Response(status_code=CLIENT_GONE)
        except NonFiniteOutput as err:  # a broken model or export: the cause, once, without a traceback
            logger.error("request {}: {}; answered 500", request.state.request_id, err)
            return error(request, 500, f"{err}; the server logged it under this request id")
        if await request.is_disconnected():  # gone while its model call ran: the answer reaches nobody
            request.state.disconnected = True
        return JSONResponse(answer)

    for path, task in ENDPOINTS.items():
        app.add_api_route(path, _endpoint(serve, task), methods=["POST"], name=task)
    return app


def _endpoint(serve, task: str):
    async def endpoint(request: Request) -> JSONResponse:
        return await serve(request, task)
    return endpoint


async def read_json(request: Request, limit: int) -> Any:
    """The body as parsed JSON; 413 over ``limit`` bytes (also when sent without a length), 400 if not UTF-8
    JSON.

    A body over the limit is still read to its end (up to ``DRAIN_LIMIT_BYTES``) and discarded, so
    that the 413 is not lost to a connection reset (see ``src/serving/request_log.py``).
    """
    body, seen = bytearray(), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= limit:
            body += chunk
        elif seen > DRAIN_LIMIT_BYTES:
            break
    if seen > limit:
        raise BadRequest(f"request body over the limit of {limit} bytes", status=413)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(f"request body is not UTF-8 ({err.reason} at byte {err.start}); expected UTF-8 JSON",
                         status=400) from None
    return parse_json(text)


def check_answer(answer: Any, path: str = "$") -> None:
    """Raise ``NonFiniteOutput`` at the first NaN or infinity in ``answer`` (JSON has neither).

    The model's outputs are checked already (``FiniteOutputs``); this guards the answer itself, so
    that a non-finite number is named, not Starlette's ``Out of range float values are not JSON compliant``.
    """
    if isinstance(answer, float) and not math.isfinite(answer):
        raise NonFiniteOutput(f"model output is not finite ({answer}) at {path} of the answer")
    if isinstance(answer, dict):
        for key, value in answer.items():
            check_answer(value, f"{path}.{key}")
    elif isinstance(answer, list):
        for i, value in enumerate(answer):
            check_answer(value, f"{path}[{i}]")


def error(request: Request, status: int, message: str) -> Response:
    """The JSON error answer; ASCII-escaped, so that no message can fail to encode."""
    body = {"error": message, "request_id": getattr(request.state, "request_id", None)}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def endpoint_list() -> list[str]:
    return ["GET /health", "GET /v1/model", *(f"POST {path}" for path in ENDPOINTS)]
