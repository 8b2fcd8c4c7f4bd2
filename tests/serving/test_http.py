"""The server over real HTTP: uvicorn in a subprocess (``python -m src.main serve``) on a loopback port."""

import http.client
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from src.inference import load_for_inference
from src.inference.classify import classify_texts
from src.inference.translate import translate_texts
from src.training.checkpoint import atomic_torch_save, load_checkpoint
from tests.serving.conftest import ENGLISH, GERMAN, REVIEWS, ServerProcess, write_checkpoint

pytestmark = pytest.mark.timeout(240)


def distinct_texts(n: int, words: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = " ".join(words).replace(".", "").replace("?", "").replace(",", "").split()
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 8))) + f" {i}" for i in range(n)]


def raw_post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST exactly ``body`` (any bytes) with http.client; status and parsed JSON answer."""
    import json

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


BAD_INPUTS = [  # (path, body, status, part of the error message)
    ("/v1/translate", b'{"texts": []}', 422, '"texts" is empty'),
    ("/v1/translate", b'{"texts": ["Das ist gut.", ""]}', 422, "index [1] empty or whitespace only"),
    ("/v1/translate", b'{"texts": ["   \\t"]}', 422, "index [0] empty or whitespace only"),
    ("/v1/translate", ('{"texts": ["' + "a" * 2001 + '"]}').encode(), 422,
     "over the limit of 2000 characters"),
    ("/v1/translate", ('{"texts": [' + ", ".join(['"a"'] * 65) + "]}").encode(), 422,
     "has 65 strings; at most 64"),
    ("/v1/translate", b'{"texts": "Das ist gut."}', 422, '"texts" must be a list of strings, got string'),
    ("/v1/translate", b'{"texts": [1, 2]}', 422, "not a string at index 0 (integer)"),
    ("/v1/translate", b'{"texts": ["a"], "beam": "x"}', 422, '"beam" must be an integer'),
    ("/v1/translate", b'["Das ist gut."]', 422, "expected a JSON object"),
    ("/v1/translate", b"Das ist gut.", 400, "request body is not JSON"),
    ("/v1/translate", b'{"texts": ["\xff\xfe"]}', 400, "request body is not UTF-8"),
    ("/v1/translate", b"", 400, "request body is not JSON"),
    ("/v1/translate", b'{"texts": ["' + b"a" * 1_000_001 + b'"]}', 413, "over the limit of 1000000 bytes"),
    ("/v1/classify", b'{"texts": ["good"]}', 409, "family encoder_decoder, served at /v1/translate"),
    ("/v1/nothing", b"{}", 404, "no endpoint POST /v1/nothing"),
]


def test_every_bad_input_gets_its_4xx_with_a_message_and_the_server_keeps_serving(translation_server):
    for path, body, status, message in BAD_INPUTS:
        got, answer = raw_post(translation_server.url, path, body)
        assert (got, path) == (status, path), answer
        assert message in answer["error"], (message, answer)
        assert answer["request_id"]
    assert httpx.get(f"{translation_server.url}/health", timeout=5).json()["status"] == "ok"
    assert httpx.post(f"{translation_server.url}/v1/translate", json={"texts": ["Das ist gut."]},
                      timeout=30).status_code == 200


def test_a_body_over_the_limit_gets_its_413_every_time(translation_server):
    """The server reads the refused body before answering: answering and closing with unread bytes can reset
    the connection (TCP RST) and lose the 413 on some kernels. Ten tries, declared length and streamed."""
    body = b'{"texts": ["' + b"a" * 1_000_001 + b'"]}'

    def chunks():
        yield body[:500_000]
        yield body[500_000:]

    for _ in range(10):
        status, answer = raw_post(translation_server.url, "/v1/translate", body)
        assert status == 413 and "over the limit of 1000000 bytes" in answer["error"], answer
        streamed = httpx.post(f"{translation_server.url}/v1/translate", content=chunks(), timeout=30)
        assert streamed.status_code == 413 and "over the limit" in streamed.json()["error"]


def test_a_body_streamed_without_length_is_held_to_the_limit(translation_server):
    def chunks():
        yield b'{"texts": ["'
        for _ in range(20):
            yield b"a" * 60_000
        yield b'"]}'

    response = httpx.post(f"{translation_server.url}/v1/translate", content=chunks(), timeout=30)
    assert response.status_code == 413 and "over the limit of 1000000 bytes" in response.json()["error"]


def test_request_ids_are_echoed_or_made_and_logged(translation_server):
    given = httpx.post(f"{translation_server.url}/v1/translate", json={"texts": ["Es regnet."]},
                       headers={"X-Request-ID": "client-42"}, timeout=30)
    made = httpx.get(f"{translation_server.url}/health", timeout=5)
    assert given.headers["X-Request-ID"] == "client-42" and len(made.headers["X-Request-ID"]) == 32
    assert given.headers["X-Batch"].split("/")[1] == "1"
    line = next(line for line in translation_server.log().splitlines() if "id=client-42" in line)
    assert "POST /v1/translate 200" in line and "texts=1" in line and "latency=" in line and "batch=" in line


def test_model_endpoint_reports_family_config_source_and_backend(translation_server, checkpoints):
    info = httpx.get(f"{translation_server.url}/v1/model", timeout=5).json()
    assert (info["family"], info["task"], info["backend"], info["source"]) == ("encoder_decoder", "translate",
                                                                               "torch", "local")
    assert info["checkpoint"] == str(checkpoints["translate"]) and info["config"]["model"]["d_model"] == 32
    assert info["serving"]["max_texts_per_request"] == 64 and info["step"] == 3


def test_500_requests_from_16_clients_each_get_their_own_translation(translation_server, checkpoints,
                                                                     one_thread):
    texts = distinct_texts(500, GERMAN + ENGLISH, seed=1)
    trained = load_for_inference(checkpoints["translate"], "cpu")
    expected = translate_texts(trained, texts, batch_size=64)  # direct, in this process
    # an untrained model gives few distinct translations (33 of 500): the classifier's load test below is the
    # strict check that answers are not swapped; here each answer must still equal its own text's translation
    assert len(set(expected)) >= 10

    def client(indices: list[int]) -> list[tuple[int, int, str, str]]:
        with httpx.Client(base_url=translation_server.url, timeout=60) as session:
            out = []
            for i in indices:
                r = session.post("/v1/translate", json={"texts": [texts[i]]})
                out.append((i, r.status_code, r.json()["translations"][0] if r.status_code == 200 else r.text,
                            r.headers.get("X-Batch", "")))
            return out

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(client, [list(range(k, 500, 16)) for k in range(16)]) for a in part]
    assert sorted(i for i, *_ in answers) == list(range(500))  # none lost
    assert [status for _, status, *_ in answers if status != 200] == []
    assert [i for i, _, text, _ in answers if text != expected[i]] == []  # each matches its own request
    assert max(int(batch.split("/")[0]) for *_, batch in answers) > 1  # concurrent requests were merged


def four_class_checkpoint(checkpoints, path) -> Path:
    """The test classifier's tokenizer under a 4-class head scaled by 3: every text gets probabilities of its
    own (an untrained 2-class head gives nearly 0.5 to all, too close to tell texts apart)."""
    tokenizer = load_for_inference(checkpoints["classify"], "cpu").tokenizers["text"]
    write_checkpoint(path, "imdb_tiny.yaml", {"text": tokenizer}, ["a", "b", "c", "d"])
    state = load_checkpoint(path)
    state["model"] = {k: v * 3.0 if k.startswith("head.out.") else v for k, v in state["model"].items()}
    atomic_torch_save(state, path)
    return path


def test_500_classify_requests_from_16_clients_each_get_their_own_probabilities(checkpoints, tmp_path,
                                                                                one_thread):
    """Every text has probabilities of its own, so an answer swapped between two requests is caught."""
    rng, vocabulary = random.Random(2), sorted(
        set(" ".join(REVIEWS).replace(".", "").replace(",", "").split()))
    texts = set()
    while len(texts) < 500:
        texts.add(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 12))))
    texts = sorted(texts)
    checkpoint = four_class_checkpoint(checkpoints, tmp_path / "classify4.pt")
    trained = load_for_inference(checkpoint, "cpu")
    expected = torch.tensor([[r["probabilities"][label] for label in trained.labels]
                             for r in classify_texts(trained, texts)])  # (500, 4)
    gaps = torch.cdist(expected, expected).fill_diagonal_(float("inf")).min(dim=1).values
    assert int((gaps > 1e-4).sum()) >= 450, \
        f"only {int((gaps > 1e-4).sum())} texts have probabilities of their own"

    def client(indices: list[int]) -> list[tuple[int, dict]]:
        with httpx.Client(base_url=server.url, timeout=60) as session:
            return [(i, session.post("/v1/classify", json={"texts": [texts[i]]}).json()) for i in indices]

    server = ServerProcess([str(checkpoint)], tmp_path / "serve.log")
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = [
                a for part in pool.map(client, [list(range(k, 500, 16)) for k in range(16)]) for a in part]
        wrong = httpx.post(f"{server.url}/v1/translate", json={"texts": ["x"]}, timeout=10)
    finally:
        server.stop()
    answers.sort(key=lambda a: a[0])
    assert [i for i, _ in answers] == list(range(500))  # none lost
    got = torch.tensor([[body["predictions"][0]["probabilities"][label] for label in trained.labels]
                        for _, body in answers])
    nearest = torch.cdist(got, expected).argmin(dim=1)  # whose probabilities each answer carries
    assert [i for i in range(500) if gaps[i] > 1e-4 and nearest[i] != i] == []  # nobody got another's answer
    assert float((got - expected).abs().max()) < 1e-5
    assert [i for i, body in answers if body["predictions"][0]["label"] != trained.labels[int(
        expected[i].argmax())]] == []
    assert wrong.status_code == 409 and "family encoder_classifier" in wrong.json()["error"]


def test_a_language_model_server_generates_reproducibly(checkpoints, tmp_path):
    server = ServerProcess([str(checkpoints["generate"])], tmp_path / "serve.log")
    try:
        request = {"prompt": "the cat", "max_new_tokens": 10, "temperature": 1.0, "seed": 3}
        first, again = (
            httpx.post(f"{server.url}/v1/generate", json=request, timeout=30).json() for _ in range(2))
        assert first == again and first["text"].startswith("the cat") and len(first["continuation"]) <= 10
        # out of range: negative; so large it samples uniformly; so small that logits / T overflow to NaN (a
        # 500 before)
        for temperature, message in [(-1, "between 0 and 100, got -1"),
                                     (1e308, "between 0 and 100, got 1e+308"),
                                      (1e-300, "0 (greedy) or between 0.001 and 100, got 1e-300")]:
            bad = httpx.post(f"{server.url}/v1/generate", json={"prompt": "a", "temperature": temperature},
                             timeout=10)
            assert bad.status_code == 422 and message in bad.json()["error"], bad.text
        greedy = httpx.post(f"{server.url}/v1/generate",
                            json={"prompt": "a", "temperature": 0, "max_new_tokens": 3},
                            timeout=30)
        assert greedy.status_code == 200, greedy.text
    finally:
        server.stop()


def test_a_model_that_cannot_load_stops_the_server_at_start_with_one_line(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(AssertionError, match="server exited with 1 before /health") as err:
        ServerProcess([str(broken)], tmp_path / "serve.log", start_timeout=60)
    assert "ERROR" in str(err.value) and "Traceback" not in str(err.value)


# ~23 s here (over the ~20 s default-suite budget), most of it the ONNX export the loader runs first
@pytest.mark.slow
def test_the_onnx_backend_serves_the_same_translations(checkpoints, tmp_path, one_thread):
    # its export lands in tmp_path
    checkpoint = shutil.copy(checkpoints["translate"], tmp_path / "translate.pt")
    texts = GERMAN[:4]
    expected = translate_texts(load_for_inference(checkpoint, "cpu"), texts)
    server = ServerProcess([str(checkpoint), "--backend", "onnx"], tmp_path / "serve.log", start_timeout=180)
    try:
        response = httpx.post(f"{server.url}/v1/translate", json={"texts": texts}, timeout=60)
        assert response.json()["translations"] == expected
        assert httpx.get(f"{server.url}/v1/model", timeout=5).json()["backend"] == "onnx"
    finally:
        server.stop()
