"""The server against hostile input, slow or vanishing clients and a broken model, over real HTTP (issue 26,
item 3).

One server for the whole module: a classifier whose embedding of one word is NaN (as a wrongly exported graph
gives NaN for padded rows), short client deadlines, and a fault injected through ``sitecustomize`` (test-only,
via PYTHONPATH) that raises an unexpected error for one text, so that the log's traceback can be checked.
"""

import json
import math
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from src.inference import load_for_inference
from src.training.checkpoint import atomic_torch_save, load_checkpoint
from src.serving.request_log import TRACEBACK_FRAMES
from tests.serving.conftest import REPO_ROOT, ServerProcess
from tests.serving.test_http import raw_post

pytestmark = pytest.mark.timeout(120)
TIMEOUT_S, KEEP_ALIVE_S = 1.5, 1.0
CLEAN, POISONED, FAULT = "A wonderful film, I loved it.", "Boring and dull.", "raise an unexpected error"
ENDPOINTS = ["/v1/translate", "/v1/classify", "/v1/generate"]
FAULT_INJECTION = '''
import src.serving.predictor as predictor

original = predictor.Preprocess.process


def process(self, data, state, collect_custom_statistics_fn=None):
    if any(text == "raise an unexpected error" for text in data.inputs):
        return deep(30)
    return original(self, data, state, collect_custom_statistics_fn)


def deep(n):  # two functions in turn: no run of identical frames for the traceback to fold
    secret_local = "LOCAL-VALUE-" + str(n)  # must never appear in the log (no variable dumps)
    if n == 0:
        raise ZeroDivisionError("injected " + secret_local[:0])
    return deeper(n - 1)


def deeper(n):
    return deep(n)


predictor.Preprocess.process = process
'''


def nan_word_checkpoint(source, path, word: str, clean: str):
    """``source`` (a classifier) with the embedding of ``word``'s tokens (none of ``clean``'s) set to NaN."""
    tokenizer = load_for_inference(source, "cpu").tokenizers["text"]
    ids = set(tokenizer.encode(word).ids) - set(tokenizer.encode(clean).ids)
    assert ids, (word, clean)
    state = load_checkpoint(source)
    for name in ("embeddings.src.weight", "embeddings.tgt.weight"):
        state["model"][name][sorted(ids)] = math.nan
    atomic_torch_save(state, path)
    return path


@pytest.fixture(scope="module")
def server(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    checkpoint = nan_word_checkpoint(checkpoints["classify"], root / "classify_nan.pt", "dull", CLEAN)
    config = root / "serving.yaml"
    config.write_text(f"request_timeout_s: {TIMEOUT_S}\nkeep_alive_s: {KEEP_ALIVE_S}\nmax_header_bytes: "
                      "8192\nbatch_window_ms: 100\n")
    faults = root / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULT_INJECTION)
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(faults), str(REPO_ROOT)])}
    process = ServerProcess([str(checkpoint), "--config", str(config)], root / "serve.log", env=env)
    yield process
    process.stop()


def lines_with(server, marker: str) -> list[str]:
    return [line for line in server.log().splitlines() if marker in line]


def log_since(server, offset: int, until=lambda log: True, timeout: float = 10.0) -> str:
    """What the server logged since ``offset`` (``len(server.log())`` at a test's start: tests share the
    server), once ``until(log)`` holds or ``timeout`` has passed (a request's line is written after its
    answer is sent)."""
    deadline = time.monotonic() + timeout
    while not until(log := server.log()[offset:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


HOSTILE = [  # (body, status, part of the message); sent to every endpoint
    (b'{"texts": ["a"], "beam": NaN}', 400, "NaN is not a JSON number"),
    (b'{"prompt": "a", "temperature": NaN}', 400, "NaN is not a JSON number"),
    (b'{"prompt": "a", "temperature": Infinity}', 400, "Infinity is not a JSON number"),
    (b'{"prompt": "a", "top_p": -Infinity}', 400, "-Infinity is not a JSON number"),
    (b'{"prompt": "a", "temperature": 1e400}', 422, "the number 1e400 is out of range"),
    (b'{"texts": ["a"], "beam": -1e999}', 422, "the number -1e999 is out of range"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested over 32 levels deep"),
    (b'{"texts": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", 400, "nested over 32 levels deep"),
    (b"[" * 100_000, 400, "nested over 32 levels deep"),
    (b'{"texts": ["a"], "beam": ' + b"9" * 5000 + b"}", 422, "an integer of 5000 digits is out of range"),
    (b'{"prompt": "a", "seed": -' + b"1" * 5000 + b"}", 422, "an integer of 5000 digits is out of range"),
    (b'{"texts": ["\\ud800"]}', 400,
     "invalid Unicode in $.texts[0]: a lone surrogate \\ud800 at character 0"),
    (b'{"texts": ["ok", "fine \\udfff"]}', 400, "$.texts[1]: a lone surrogate \\udfff at character 5"),
    (b'{"prompt": "\\udc80"}', 400, "invalid Unicode in $.prompt"),
    (b'{"\\ud800": ["a"]}', 400, "invalid Unicode in a key of $"),
    (b'{"texts": ["a"]', 400, "request body is not JSON"),
    # finite and valid JSON, then refused by its field's check
    (b'{"texts": ["a"], "beam": 1e308}', 422, None),
]


def test_every_hostile_body_gets_a_json_4xx_on_every_endpoint(server):
    offset = len(server.log())
    for path in ENDPOINTS:
        for body, status, message in HOSTILE:
            got, answer = raw_post(server.url, path, body)
            assert got == status if message else 400 <= got < 500, (path, body[:60], got, answer)
            if message:
                assert message in answer["error"], (path, body[:60], answer)
            assert answer["request_id"]
    expected = len(ENDPOINTS) * len(HOSTILE)
    log = log_since(server, offset, lambda log: len(re.findall(r"POST /v1/\w+ \d+ id=", log)) >= expected)
    assert len(re.findall(r"POST /v1/\w+ 4\d\d id=", log)) == expected, log[-3000:]
    assert " 500 " not in log and "ERROR" not in log and "Traceback" not in log, log[-3000:]
    # brackets inside a string are text, not nesting; a surrogate pair is one valid character
    fine = httpx.post(f"{server.url}/v1/classify", timeout=30,
                      content=b'{"texts": ["' + b"[" * 500 + b' good \\ud83d\\ude00"]}')
    assert fine.status_code == 200, fine.text


def test_a_non_finite_model_output_is_a_500_naming_it_and_never_leaks_into_other_answers(server):
    offset = len(server.log())
    alone = httpx.post(f"{server.url}/v1/classify", json={"texts": [CLEAN]}, timeout=30)
    assert alone.status_code == 200 and all(
        math.isfinite(p) for p in alone.json()["predictions"][0]["probabilities"].values())

    mixed = httpx.post(f"{server.url}/v1/classify", json={"texts": [CLEAN, POISONED]}, timeout=30,
                       headers={"X-Request-ID": "nan-mixed"})
    assert mixed.status_code == 500, mixed.text
    assert "model output is not finite (NaN or infinity) for row 1 of a model call of 2 row(s)" \
        in mixed.json()["error"]

    def post(text: str) -> httpx.Response:  # concurrent: clean and poisoned texts share a model call
        return httpx.post(f"{server.url}/v1/classify", json={"texts": [text]}, timeout=30)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, [CLEAN, POISONED] * 3))
    assert [a.status_code for a in answers] == [200, 500] * 3, [a.text for a in answers]
    assert all(a.json() == alone.json() for a in answers[::2])  # the NaN row did not touch its batch mates
    assert all("model output is not finite" in a.json()["error"] for a in answers[1::2])

    log = log_since(server, offset, lambda log: log.count(" 500 id=") >= 4)
    cause = [line for line in log.splitlines() if "nan-mixed" in line and "ERROR" in line]
    assert len(cause) == 1 and "model output is not finite" in cause[0] and "answered 500" in cause[0], cause
    assert "Out of range float values" not in log and "Traceback" not in log


def test_an_unexpected_error_is_a_json_500_with_a_bounded_traceback_and_no_variables(server):
    response = httpx.post(f"{server.url}/v1/classify", json={"texts": [FAULT]}, timeout=30,
                          headers={"X-Request-ID": "fault-1"})
    assert response.status_code == 500 and response.json()["request_id"] == "fault-1"
    log = log_since(server, 0, lambda log: "id=fault-1" in log).splitlines()
    first = next(i for i, line in enumerate(log) if "request fault-1 failed" in line)
    last = next(i for i, line in enumerate(log) if "id=fault-1" in line)
    traceback = log[first:last]
    assert "ZeroDivisionError: injected" in traceback[-1] and "deeper" in "\n".join(traceback)
    # a header line, then each frame's file line, code line and (Python 3.11) caret line at most, of 60+
    # frames
    assert len(traceback) <= 2 + 3 * TRACEBACK_FRAMES, "\n".join(traceback)
    assert "LOCAL-VALUE" not in server.log() and "│" not in server.log()  # loguru's diagnose dump is off


def send_and_close(url: str, data: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)


def test_a_client_that_disconnects_is_one_info_line(server):
    offset = len(server.log())
    body = json.dumps({"texts": [CLEAN]}).encode()
    for i in range(5):  # gone while sending its body
        send_and_close(server.url,
                       b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"X-Request-ID: gone-%d\r\nContent-Length: 100\r\n\r\n{\"texts\": [" % i)
    for i in range(5):  # gone as soon as its whole request is sent
        send_and_close(server.url,
                       b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"X-Request-ID: sent-%d\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body))
    ids = [f"gone-{i}" for i in range(5)] + [f"sent-{i}" for i in range(5)]
    log_since(server, offset, lambda log: all(f"id={rid} " in log for rid in ids))
    for rid in ids:
        lines = lines_with(server, rid)
        assert len(lines) == 1 and "| INFO " in lines[0], lines
        if rid.startswith("gone"):
            assert "POST /v1/classify 499 client disconnected before its answer" in lines[0], lines
        else:  # answered before the close was seen (200), or not (499): never a 500
            assert re.search(r"POST /v1/classify (200|499) ", lines[0]), lines
    log = log_since(server, offset)
    assert "Traceback" not in log and "ClientDisconnect" not in log and "ERROR" not in log, log[-3000:]
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def stall(url: str, first: bytes, trickle: bytes = b"") -> tuple[float, bytes]:
    """Send ``first`` (then ``trickle`` every 0.2 s) and read until the server closes: (seconds, bytes
    received)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=0.2) as sock:
        start, received = time.monotonic(), b""
        sock.sendall(first)
        while time.monotonic() - start < TIMEOUT_S + 8:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if trickle and not received:
                    try:
                        sock.sendall(trickle)
                    except OSError:  # closed meanwhile: read what it said
                        trickle = b""
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return time.monotonic() - start, received


def test_slow_clients_get_a_408_and_are_closed_after_the_deadline(server):
    offset = len(server.log())
    stalled = {
        "silent": (b"",),
        "part of the headers": (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n",),
        "headers one byte at a time": (b"POST /v1/classify HTTP/1.1\r\n", b"X"),
        "headers and part of the body": (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"
                                         b"X-Request-ID: slow-body\r\n"
                                         b"Content-Length: 100\r\n\r\n{\"texts\": [",),
    }
    body = json.dumps({"texts": [CLEAN]}).encode()
    whole = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with ThreadPoolExecutor(len(stalled) + 1) as pool:
        futures = {name: pool.submit(stall, server.url, *args) for name, args in stalled.items()}
        idle = pool.submit(stall, server.url, whole)  # answered, then idle on a keep-alive connection
        results = {name: future.result() for name, future in futures.items()}
        idle_s, idle_received = idle.result()
    for name, (seconds, received) in results.items():
        assert TIMEOUT_S - 0.1 <= seconds <= TIMEOUT_S + 4, (name, seconds)
        head, _, answer = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"application/json" in head, (name, received)
        assert json.loads(answer)["error"] == \
            f"no complete request within {TIMEOUT_S:g} s; the connection is closed"
    assert idle_received.startswith(b"HTTP/1.1 200 ") and idle_s <= KEEP_ALIVE_S + 4, (idle_s, idle_received)
    log = log_since(server, offset, lambda log: "slow-body" in log)
    assert log.count("timed out: no complete request within 1.5 s") == 3, log  # one INFO line per connection
    assert [line for line in log.splitlines() if "slow-body" in line] == [
        next(line for line in log.splitlines()
             if "POST /v1/classify 408 request not received in time" in line)]
    assert "Traceback" not in log and "ERROR" not in log


def test_headers_over_the_limit_get_a_json_4xx(server):
    big = httpx.get(f"{server.url}/health", headers={"X-Big": "a" * 10_000}, timeout=10)
    # 431 from the app when the headers arrive whole (as on loopback); 400 from h11 if they came in pieces
    assert big.status_code in (431, 400) and "limit of 8192 bytes" in big.json()["error"], big.text
    # headers that arrive in pieces are held to the limit by h11 while they are incomplete
    seconds, received = stall(server.url, b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
    assert received.startswith(b"HTTP/1.1 400 ") and b"invalid HTTP request" in received, received[:300]
    assert seconds < TIMEOUT_S
