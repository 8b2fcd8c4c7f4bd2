"""Two consecutive ``train --config config/tiny.yaml`` runs, made once per test session (``tiny_runs``).

Every test that needs a real run folder (offline sessions, run management, translate/evaluate,
import into the ClearML stand-in) reads these two runs instead of training its own: they cost
about a minute together. Tests must not change them (a resume that trains would).
"""

import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.clearml_stub.stub import run_src_main

STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No ClearML server configured anywhere: an empty HOME, no CLEARML_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(HOME=str(home), CLEARML_CACHE_DIR=str(home / "clearml_cache"), PYTHONUNBUFFERED="1", **extra)
    home.mkdir(parents=True, exist_ok=True)
    return env


def missing_data(reason: str) -> None:
    """Skip a test whose data is not installed here; in CI (``CI`` set, after ``.ci/install``) fail instead,
    so that a broken install cannot pass as a run with a few tests skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI ran .ci/install, which should have installed it)")
    pytest.skip(reason)


def imdb_data_dir() -> str:
    """The data folder holding the cached IMDB CSV, for a run with an empty HOME (``STEPWISE_DATA_DIR``)."""
    from src.data.text_classification import imdb_csv_path

    try:
        return str(imdb_csv_path().parents[1])
    except FileNotFoundError as err:
        missing_data(f"IMDB CSV not cached: {err}")


def train_offline(config: str, root: Path, *overrides: str, **env: str):
    """``train --config CONFIG [OVERRIDES]`` under ``root`` with no ClearML server; the finished process and
    its run folder."""
    proc = run_src_main(["train", "--config", config, *overrides, f"output_dir={root / 'runs'}"],
                        clean_env(root / "home", **env), timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, run_folder(proc.stdout)


def train_completed(config: str, root: Path, *overrides: str, **env: str) -> Path:
    """``train_offline``, asserting that every step completed; the run folder."""
    import json

    _, run_dir = train_offline(config, root, *overrides, **env)
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS), status
    return run_dir


def seed_step_cache(root: Path, run_dir: Path) -> None:
    """Give the runs under ``root/runs`` (where ``train_offline`` writes) the step cache of the finished run
    ``run_dir``: a run there whose data sections equal that run's takes its data_prep and
    tokenize from it (hard links, never written), as a second run in the same output_dir would. For runs
    whose tests are not about the data steps: their loss curves and outputs are those of the same files."""
    import shutil

    from src.runs.step_cache import CACHE_DIR

    shutil.copytree(run_dir.parent / CACHE_DIR, root / "runs" / CACHE_DIR)


def run_folder(stdout: str) -> Path:
    """The ``run folder:`` line of a train summary."""
    match = re.search(r"^run folder:\s+(\S+)$", stdout, re.MULTILINE)
    assert match, f"no 'run folder:' line in:\n{stdout[-2000:]}"
    return Path(match.group(1))


def make_tiny_runs(root: Path) -> SimpleNamespace:
    """The ``tiny_runs`` session fixture's body (tests/conftest.py), in the empty folder ``root``: the
    report's tests read the same runs."""
    env = clean_env(root / "home")
    runs_dir = root / "runs"
    procs, seconds = [], []
    for _ in range(2):  # the same command twice, as a user repeating an experiment
        start = time.perf_counter()
        # --no-cache: each run prepares its own data, so every step of both runs has its ClearML session
        procs.append(run_src_main(["train", "--config", "config/tiny.yaml", "--no-cache",
                                   f"output_dir={runs_dir}"],
                                  env, timeout=240))
        seconds.append(time.perf_counter() - start)
        assert procs[-1].returncode == 0, procs[-1].stderr[-5000:]
    return SimpleNamespace(root=root, env=env, runs_dir=runs_dir, procs=procs, seconds=seconds,
                           run_dirs=[run_folder(p.stdout) for p in procs])


LOSS_CURVES = Path(__file__).parent / "fixtures" / "loss_curves.json"


def recorded_curve(key: str) -> dict:
    """The fixture of ``key`` in loss_curves.json: config, overrides and ``loss`` by step."""
    import json

    return json.loads(LOSS_CURVES.read_text())["curves"][key]


def assert_recorded_loss_curve(run_dir: Path, key: str) -> None:
    """The run's train loss equals the recorded curve of ``key`` at every logged step, to 1e-6."""
    import json

    recorded = recorded_curve(key)["loss"]
    rows = [json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
    curve = {str(row["step"]): row["loss"] for row in rows if "loss" in row}
    assert curve.keys() == recorded.keys()
    for step, loss in recorded.items():
        assert curve[step] == pytest.approx(loss, abs=1e-6), f"{key}: step {step}"
