"""The app in process (Starlette's TestClient): a failing model call is one request's JSON 500, logged with
its id."""

import asyncio
from types import SimpleNamespace

from fastapi.testclient import TestClient
from loguru import logger

from src.config.serving import ServingConfig
from src.serving.app import create_app
from src.serving.predictor import Preprocess


class Failing(Preprocess):
    """A translation predictor whose model call fails for texts containing 'boom' and echoes the others."""

    def __init__(self) -> None:
        super().__init__(ServingConfig(batch_window_ms=0.0))
        self.trained = SimpleNamespace(family="encoder_decoder")

    def process(self, data, state, collect_custom_statistics_fn=None):
        if any("boom" in text for text in data.inputs):
            raise RuntimeError("model failed")
        return [text.upper() for text in data.inputs]


def test_a_failing_model_call_is_a_json_500_for_that_request_only():
    lines = []
    handle = logger.add(lambda message: lines.append(message.record), level="INFO")
    try:
        with TestClient(create_app(Failing())) as client:
            failed = client.post("/v1/translate", json={"texts": ["boom"]}, headers={"X-Request-ID": "r-1"})
            fine = client.post("/v1/translate", json={"texts": ["ok"]})
    finally:
        logger.remove(handle)
    assert failed.status_code == 500 and failed.headers["X-Request-ID"] == "r-1"
    assert failed.json() == {"error": "internal error; the server logged it under this request id",
                             "request_id": "r-1"}
    assert fine.status_code == 200 and fine.json() == {"translations": ["OK"]} \
        and fine.headers["X-Batch"] == "1/1"
    logged = [r["extra"] for r in lines if r["extra"].get("request_id") == "r-1" and "status" in r["extra"]]
    assert logged == [{"request_id": "r-1", "method": "POST", "path": "/v1/translate", "status": 500,
                       "n_texts": 1,
                       "latency_ms": logged[0]["latency_ms"], "batch_requests": None, "batch_inputs": None}]


def test_an_unsafe_client_request_id_is_replaced():
    with TestClient(create_app(Failing())) as client:
        answer = client.get("/health", headers={"X-Request-ID": "a b\tc" * 50})
    assert answer.status_code == 200 and len(answer.headers["X-Request-ID"]) == 32


def test_health_is_503_with_the_reason_once_the_batcher_has_stopped():
    app = create_app(Failing())
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok", "family": "encoder_decoder"}
        batcher = app.state.batcher

        async def kill() -> None:  # in the server's event loop: the worker task dies, the app stays up
            batcher._task.cancel()
            await asyncio.sleep(0.01)

        client.portal.call(kill)
        health = client.get("/health")
        refused = client.post("/v1/translate", json={"texts": ["ok"]})
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable" \
        and health.json()["error"] == "the micro-batcher stopped: cancelled"
    assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
