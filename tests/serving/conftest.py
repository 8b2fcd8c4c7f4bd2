"""Tiny self-contained checkpoints (untrained, built in about a second) and a real server in a subprocess.

The checkpoints are written as the trainer writes them (weights, config, tokenizers, special ids,
family, class names), the pattern of tests/inference/test_loader.py. ``ServerProcess`` runs
``python -m src.main serve ... --port 0`` in its own process group (the port it logs once bound) and waits for
``/health`` under a hard deadline; whatever happens, the group is killed at the end.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from datasets import Dataset

from src.config import config_to_dict
from src.data.special_tokens import PAD_ID
from src.data.tokenizer import TokenizerConfig, load_tokenizer, train_one
from src.experiment import load_config
from src.inference import inference_fields
from src.inference.loader import model_sizes
from src.models.builders import build
from src.training.checkpoint import atomic_torch_save

REPO_ROOT = Path(__file__).resolve().parents[2]
GERMAN = ["Ich habe keine Zeit.", "Das ist gut.", "Wir gehen nach Hause.", "Er liest ein Buch.",
          "Die Katze schläft.", "Wo ist der Bahnhof?", "Es regnet heute.", "Sie trinkt Kaffee."]
ENGLISH = ["I have no time.", "That is good.", "We go home.", "He reads a book.", "The cat sleeps.",
           "Where is the station?", "It rains today.", "She drinks coffee."]
REVIEWS = ["A wonderful film, I loved it.", "Terrible acting and a dull plot.", "Great fun for everyone.",
           "Boring, far too long.", "The best movie this year.", "I want my money back."]


def write_checkpoint(path: Path, config: str, tokenizers: dict, labels: list[str] | None = None,
                     sharpen: float = 1.0) -> Path:
    """An untrained model of ``config`` saved as a self-contained checkpoint at ``path``.

    ``sharpen`` scales the encoder-decoder's output projection: an untrained model's logits are nearly
    flat, and a near-tie could flip under the float noise of a different batch shape. Scaled,
    each greedy choice has a wide margin, so a text's output is the same in any batch.
    """
    cfg = load_config(REPO_ROOT / "config" / config, ["model.dropout=0.0"])
    torch.manual_seed(0)
    model = build(cfg.model, **model_sizes(cfg.model.family, tokenizers, labels or [], PAD_ID)).eval()
    if sharpen != 1.0:
        with torch.no_grad():
            model.generator.weight.mul_(sharpen)  # the output projection (tied to the embeddings: both scale)
    state = {"step": 3, "model": model.state_dict(), "config": json.dumps(config_to_dict(cfg)),
             **inference_fields(tokenizers, cfg.model.family), **({"labels": labels} if labels else {})}
    atomic_torch_save(state, path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``translate`` (encoder-decoder), ``classify`` (encoder classifier) and ``generate`` (character LM)."""
    from src.data.char_tokenizer import char_tokenizer

    root = tmp_path_factory.mktemp("serving_checkpoints")
    bpe = load_tokenizer(train_one(Dataset.from_dict({"text": (GERMAN + ENGLISH) * 4}), ["text"],
                                   TokenizerConfig(vocab_size=300, min_frequency=1), root / "bpe.json"))
    reviews = load_tokenizer(train_one(Dataset.from_dict({"text": REVIEWS * 4}), ["text"],
                                       TokenizerConfig(vocab_size=300, min_frequency=1),
                                       root / "reviews.json"))
    return {
        "translate": write_checkpoint(root / "translate.pt", "tiny.yaml", {"src": bpe, "tgt": bpe},
                                      sharpen=4.0),
        "classify": write_checkpoint(root / "classify.pt", "imdb_tiny.yaml", {"text": reviews},
                                     ["neg", "pos"]),
        "generate": write_checkpoint(root / "generate.pt", "lm_tiny.yaml",
                                     {"text": char_tokenizer("abcdefghijklmnopqrstuvwxyz .,\n")}),
    }


BOUND = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")


class ServerProcess:
    """``python -m src.main serve ARGS --port 0`` in its own process group; ``url``, ``log()``, ``stop()``.

    The port is the one serve logs once bound: no race for a free port, and ``--port 0`` is tested by every
    server.

    Args:
        args: the serve arguments after ``serve`` (model first).
        log_path: where its stdout and stderr go.
        env: the environment (default: this one, with PYTHONUNBUFFERED).
        start_timeout: seconds to wait for ``/health``.
    """

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.port: int | None = None  # asked for port 0: the port is read from serve's log line once bound
        self.url = ""
        self.log_path = log_path
        # one intra-op thread: on a shared 2-core machine two threads spin against each other (0.5 s a call,
        # not 30 ms)
        env = {**(env or os.environ), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "src.main", "serve", *args, "--port", "0"],
                                         cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_healthy(start_timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode} before "
                                     f"/health:\n{self.log()[-4000:]}")
            if self.port is None:
                bound = BOUND.search(self.log())
                if bound:  # serve logs the port it bound, not the 0 it was given
                    self.port = int(bound.group(1))
                    assert self.port != 0, self.log()[-2000:]
                    self.url = f"http://127.0.0.1:{self.port}"
            try:
                if self.port is not None and httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no /health answer within {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the server process alone (as a process manager would)."""
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for a clean exit (else SIGKILL); the exit code."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        code = self.proc.poll()
        self.kill()
        return code if code is not None else -9


@pytest.fixture
def one_thread():
    """PyTorch on one intra-op thread for the test (see ServerProcess: 2 threads spin on a busy 2-core
    machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def translation_server(checkpoints, tmp_path_factory):
    """One translation server for a module's tests; stopped (SIGTERM) afterwards."""
    server = ServerProcess([str(checkpoints["translate"])], tmp_path_factory.mktemp("server") / "serve.log")
    yield server
    server.stop()
