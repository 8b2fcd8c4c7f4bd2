"""``serve --backend onnx`` on trained sliding-window and Longformer runs answers what PyTorch answers.

Issue 26: a sliding-window model exported although the README said it was refused, and its graph
gave NaN for every padded row; two texts of different lengths in one request were an HTTP 500, and
54 of 80 requests from 8 clients failed. Here the tiny ListOps (sliding window) and byte-level
IMDB (Longformer) runs are served on ONNX Runtime over real HTTP: the server exports the run on
start (checked against PyTorch, ``src/export/parity.py``), and 8 concurrent clients send 80
requests, each with a short and a long text, so that rows are padded inside a request and across
the requests the micro-batcher merges. Every answer is compared with PyTorch's for that text alone.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from datasets import load_from_disk

from src.inference import load_for_inference
from src.inference.classify import classify_texts
from tests.serving.conftest import ServerProcess

pytestmark = pytest.mark.timeout(600)  # two tiny trainings and two exports on 2 shared cores

CLIENTS, REQUESTS_PER_CLIENT = 8, 10
SHORT = {"listops": ["[MAX 2 9 ]", "[SM 3 [MIN 4 7 ] ]", "5"], "imdb": ["Great!", "Awful film.", "ok"]}


def texts_of(run_dir: Path, kind: str) -> list[tuple[str, str]]:
    """(short, long) text pairs: a few tokens against test texts of tens to hundreds of tokens."""
    # within the server's 2,000 characters a text; the byte-level model reads the first 255 bytes of them
    long = sorted(
        (text[:1500] for text in load_from_disk(str(run_dir / "tokenize" / "encoded"))["test"]["text"]),
                  key=len)
    assert len(long[-1]) > 10 * max(map(len, SHORT[kind]))  # the lengths in one request differ widely
    short = SHORT[kind]
    return [(short[i % len(short)], long[(7 * i) % len(long)]) for i in range(CLIENTS * REQUESTS_PER_CLIENT)]


def serve_and_compare(run_dir: Path, kind: str, tmp_path: Path) -> None:
    pairs = texts_of(run_dir, kind)
    trained = load_for_inference(run_dir / "train" / "checkpoints" / "best.pt", "cpu")
    attention = trained.config.model.attention
    server = ServerProcess([str(run_dir), "--backend", "onnx"], tmp_path / f"{kind}.log", start_timeout=300.0)
    try:
        assert httpx.get(f"{server.url}/v1/model").json()["backend"] == "onnx"

        def client(indices: range) -> list[tuple[int, int, dict]]:
            with httpx.Client(base_url=server.url, timeout=120.0) as session:
                answers = []
                for i in indices:
                    response = session.post("/v1/classify", json={"texts": list(pairs[i])})
                    answers.append((i, response.status_code, response.json()))
                return answers

        chunks = [range(c * REQUESTS_PER_CLIENT, (c + 1) * REQUESTS_PER_CLIENT) for c in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for chunk in pool.map(client, chunks) for a in chunk]
    finally:
        code = server.stop()
    failed = [(i, status, body) for i, status, body in answers if status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed ({attention}), first: {failed[0]}"
    # uvicorn re-raises the SIGTERM it caught once shut down cleanly
    assert code in (0, -15), server.log()[-3000:]
    assert "| ERROR" not in server.log(), server.log()[-3000:]
    manifest = json.loads((run_dir / "export" / "export.json").read_text())
    # the export the server took was checked against PyTorch
    assert manifest["checked"]["max_abs_diff"] < 1e-4
    # each text alone
    expected = {text: classify_texts(trained, [text])[0] for pair in pairs for text in pair}
    for i, _, body in answers:
        for text, got in zip(pairs[i], body["predictions"], strict=True):
            want = expected[text]
            assert got["label"] == want["label"], (attention, i, text[:60], got, want)
            assert got["probabilities"].keys() == want["probabilities"].keys()
            worst = max(abs(got["probabilities"][k] - p) for k, p in want["probabilities"].items())
            assert worst < 1e-5, (attention, i, text[:60], worst)


def test_a_sliding_window_run_served_on_onnx_answers_8_clients_as_pytorch_does(listops_run, tmp_path):
    serve_and_compare(listops_run, "listops", tmp_path)


def test_a_longformer_run_served_on_onnx_answers_8_clients_as_pytorch_does(imdb_long_run, tmp_path):
    serve_and_compare(imdb_long_run, "imdb", tmp_path)
