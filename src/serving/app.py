"""The FastAPI app: endpoints, request ids and per-request logs, the body limit, JSON errors.

Every request gets an ``X-Request-ID`` (the client's, if it sent one) and one structured log
line (loguru, fields bound as ``extra``): request id, method, path, status, texts, latency and
the batch it ran in. Every error body is JSON ``{"error": message, "request_id": id}``.
"""

import json
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.serving.batching import MicroBatcher, ShuttingDown
from src.serving.predictor import FAMILIES_OF, Preprocess
from src.serving.validation import BadRequest

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex  # a client's, if it is sane
        request.state.request_id, request.state.n_texts, request.state.batch = request_id, None, None
        start = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            response = too_large(request_id, int(declared), config.max_body_bytes)
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 (any failure: logged with its id, answered as JSON 500)
                logger.exception("request {} {} {} failed", request_id, request.method, request.url.path)
                response = error(request, 500, "internal error; the server logged it under this request id")
        response.headers["X-Request-ID"] = request_id
        batch = request.state.batch
        if batch is not None:  # how the request ran: requests/texts in its model call (for clients and the bench)
            response.headers["X-Batch"] = f"{batch.requests}/{batch.inputs}"
        fields = {"request_id": request_id, "method": request.method, "path": request.url.path,
                  "status": response.status_code, "n_texts": request.state.n_texts,
                  "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                  "batch_requests": batch and batch.requests, "batch_inputs": batch and batch.inputs}
        logger.bind(**fields).info("{method} {path} {status} id={request_id} texts={n_texts} latency={latency_ms} ms "
                                   "batch={batch_requests} requests/{batch_inputs} texts", **fields)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail
        if exc.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}; expected one of {endpoint_list()}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; expected one of {endpoint_list()}"
        return error(request, exc.status_code, str(message))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "family": predictor.trained.family}

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        return {**predictor.describe(), **(source or {}), "serving": config.model_dump()}

    async def serve(request: Request, task: str) -> JSONResponse:
        if predictor.task != task:
            return error(request, 409, f"the loaded model is of family {predictor.trained.family}, served at "
                                       f"/v1/{predictor.task}; /v1/{task} needs a model of family "
                                       f"{' or '.join(FAMILIES_OF[task])}")
        try:
            body = await read_json(request, config.max_body_bytes)
            state: dict[str, Any] = {}
            job = predictor.preprocess(body, state)
            request.state.n_texts = job.size
            outputs, request.state.batch = await batcher.submit(job)
        except BadRequest as err:
            return error(request, err.status, str(err))
        except ShuttingDown as err:
            return error(request, 503, str(err))
        return JSONResponse(predictor.postprocess(outputs, state))

    for path, task in ENDPOINTS.items():
        app.add_api_route(path, _endpoint(serve, task), methods=["POST"], name=task)
    return app


def _endpoint(serve, task: str):
    async def endpoint(request: Request) -> JSONResponse:
        return await serve(request, task)
    return endpoint


async def read_json(request: Request, limit: int) -> Any:
    """The body as parsed JSON; 413 over ``limit`` bytes (also when sent without a length), 400 if not UTF-8 JSON."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"request body over the limit of {limit} bytes", status=413)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(f"request body is not UTF-8 ({err.reason} at byte {err.start}); expected UTF-8 JSON",
                         status=400) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadRequest(f"request body is not JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                         'expected a JSON object such as {"texts": ["Das ist gut."]}', status=400) from None


def error(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "request_id": getattr(request.state, "request_id", None)}, status_code=status)


def too_large(request_id: str, size: int, limit: int) -> JSONResponse:
    return JSONResponse({"error": f"request body of {size} bytes is over the limit of {limit} bytes",
                         "request_id": request_id}, status_code=413)


def endpoint_list() -> list[str]:
    return ["GET /health", "GET /v1/model", *(f"POST {path}" for path in ENDPOINTS)]
