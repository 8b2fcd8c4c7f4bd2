"""SIGTERM during load: the server stops taking requests, and every request already in flight gets its
answer."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import ServerProcess

pytestmark = pytest.mark.timeout(180)
WINDOW_MS = 400  # each request waits this long in the batcher: many are in flight when the signal comes
MARGIN_S = 0.25  # a request started this long before the signal has surely reached the server (loopback)


def test_sigterm_during_load_drops_no_request_in_flight(checkpoints, tmp_path):
    config = tmp_path / "serving.yaml"
    config.write_text(f"batch_window_ms: {WINDOW_MS}\nmax_batch_size: 64\n")
    server = ServerProcess([str(checkpoints["translate"]), "--config", str(config)], tmp_path / "serve.log")
    stop = threading.Event()
    records: list[tuple[float, float, int | str]] = []  # (sent, answered, status or error)
    outstanding: dict[tuple[int, int], float] = {}  # (client, request) -> sent, until answered

    def client(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as session:
            i = 0
            while not stop.is_set():
                sent = time.monotonic()
                outstanding[(k, i)] = sent
                try:
                    outcome: int | str = session.post(
                        "/v1/translate", json={"texts": [f"Das ist gut {k} {i}."]}).status_code
                except httpx.TransportError as err:  # after the signal: refused or closed, as expected
                    outcome = type(err).__name__
                    time.sleep(0.05)
                records.append((sent, time.monotonic(), outcome))
                outstanding.pop((k, i))
                i += 1

    try:
        with ThreadPoolExecutor(16) as pool:
            for k in range(16):
                pool.submit(client, k)
            time.sleep(1.0)  # under load for a while first
            deadline = time.monotonic() + 30
            # signal while >= 4 requests sent long enough ago are unanswered
            while time.monotonic() < deadline:
                now = time.monotonic()
                if sum(sent < now - MARGIN_S for sent in list(outstanding.values())) >= 4:
                    break
                time.sleep(0.01)
            signalled = time.monotonic()
            server.terminate()
            code = server.proc.wait(timeout=60)
            stop.set()
    finally:
        stop.set()
        server.kill()
    in_flight = [r for r in records if r[0] < signalled - MARGIN_S and r[1] > signalled]
    before = [r for r in records if r[0] < signalled - MARGIN_S]
    print(f"{len(records)} requests, {len(before)} sent before the signal, {len(in_flight)} in flight at it")
    assert len(in_flight) >= 4, f"too few requests in flight at the signal to test anything: {len(in_flight)}"
    assert [r for r in before if r[2] != 200] == []  # every request sent before the signal was answered
    log = server.log()
    assert code in (0, -15), log[-3000:]  # uvicorn re-raises the SIGTERM it caught once shut down cleanly
    assert "Shutting down" in log and "Finished server process" in log
    assert "micro-batcher drained and stopped" in log
