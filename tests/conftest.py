"""Shared fixtures: tiny model configurations that build and run in milliseconds on CPU.

The default run is spread over the machine's cores by pytest-xdist (``-n auto --dist loadfile`` in
pyproject.toml): each test file runs whole on one worker, so its module fixtures are built once, and
``once_per_session`` builds the costly session fixtures once for all workers.
"""

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # One worker per core: each worker's torch (and every process it starts, which inherits the
    # variable) computes on its own share of the cores instead of all of them fighting over all.
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))

from src.config.model import ModelConfig


@pytest.fixture
def tiny_config() -> ModelConfig:
    """Two layers per stack, width 32, no dropout: fast and deterministic."""
    return ModelConfig(
        d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0, max_positions=64
    )


@pytest.fixture(params=[False, True], ids=["post-norm", "pre-norm"])
def norm_first(request: pytest.FixtureRequest) -> bool:
    return request.param


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's status once everything is reported.

    A ClearML offline task run in-process can leave its reporter thread behind; once a later test
    points the SDK at the loopback stand-in, that thread retries forever and, being non-daemon,
    would keep the finished test run from exiting.
    """
    if _EXIT_STATUS and not hasattr(config, "workerinput"):
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


T = TypeVar("T")


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)`` once per test session, shared by every pytest-xdist worker; its result must pickle.

    Without xdist it simply runs in a fresh temporary folder. Under xdist the first worker to ask
    builds under a file lock in the folder all workers share; the others wait for it and read its
    pickled result. A build that fails leaves nothing behind, so the next asker tries again.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the run's base folder; each worker's lies below it
    folder, result = shared / name, shared / f"{name}.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if result.is_file():
            return pickle.loads(result.read_bytes())
        if folder.exists():  # a worker's failed build
            import shutil

            shutil.rmtree(folder)
        folder.mkdir()
        value = build(folder)
        result.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory):
    """Two ``train --config config/tiny.yaml`` runs, made once per session (tests/pipelines/conftest.py says
    more)."""
    from tests.pipelines.conftest import make_tiny_runs

    return once_per_session(tmp_path_factory, "tiny_runs", make_tiny_runs)


@pytest.fixture(scope="session")
def listops_run(tmp_path_factory: pytest.TempPathFactory):
    """A completed ``train --config config/listops_tiny.yaml`` run (sliding-window attention), made once per
    session."""
    from tests.pipelines.conftest import train_completed

    return once_per_session(tmp_path_factory, "listops_run",
                            lambda root: train_completed("config/listops_tiny.yaml", root))


@pytest.fixture(scope="session")
def imdb_long_run(tmp_path_factory: pytest.TempPathFactory):
    """A completed ``train --config config/imdb_long_tiny.yaml`` run (Longformer attention), made once per
    session."""
    from tests.pipelines.conftest import imdb_data_dir, train_completed

    data_dir = imdb_data_dir()  # skips (or fails in CI) before any worker builds, when the CSV is missing
    return once_per_session(tmp_path_factory, "imdb_long_run", lambda root: train_completed(
        "config/imdb_long_tiny.yaml", root, STEPWISE_DATA_DIR=data_dir))


@pytest.fixture(scope="session")
def imdb_run(tmp_path_factory: pytest.TempPathFactory):
    """A completed ``train --config config/imdb_tiny.yaml`` run, made once per session: its process and run
    folder. The classification pipeline's tests read it; the other IMDB runs of the same data take its
    data steps from its step cache (``seed_step_cache`` in tests/pipelines/conftest.py)."""
    from tests.pipelines.conftest import imdb_data_dir, train_offline

    data_dir = imdb_data_dir()
    return once_per_session(tmp_path_factory, "imdb_run", lambda root: train_offline(
        "config/imdb_tiny.yaml", root, STEPWISE_DATA_DIR=data_dir))


# Files whose tests take longest (they train or serve runs), in the order the workers should start
# them: xdist hands out test files in collection order, so the longest go first and the short ones
# fill the gaps at the end, instead of one long file starting last and running alone.
LONGEST_FIRST = ("tests/test_gpu_check.py", "tests/export/test_serving_banded.py", "tests/pipelines/",
                 "tests/report/", "tests/lessons/", "tests/export/", "tests/serving/", "tests/training/")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Longest files first (``LONGEST_FIRST``), and tests/tracking last. One of its in-process offline
    ClearML tasks leaves a reporter thread that, once a later test points the SDK at the stand-in,
    retries forever (the "Retrying ... _TokenManager__token" lines); the in-process training tests
    that used to follow it ran 2-4x slower beside it. Last, it costs nothing, and
    pytest_sessionfinish ends the process."""

    def rank(item: pytest.Item) -> tuple[bool, int]:
        path = item.nodeid.replace("\\", "/")
        longest = next((i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)),
                       len(LONGEST_FIRST))
        return path.startswith("tests/tracking/"), longest

    items.sort(key=rank)  # stable: the order inside each file and each rank is kept
