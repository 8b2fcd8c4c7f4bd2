"""``python -m src.main train`` as a user runs it with no server: five offline sessions, clear errors."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import STEPS, clean_env

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 170) -> subprocess.CompletedProcess:
    return run_src_main(args, env, timeout)


@pytest.fixture(scope="module")
def offline_run(tiny_runs):
    return tiny_runs.procs[0], tiny_runs.run_dirs[0], tiny_runs.seconds[0]


def sessions(run_dir: Path) -> dict:
    found = {}
    for step in STEPS:
        zips = list((run_dir / step / "clearml_offline").glob("*.zip"))
        assert len(zips) == 1, f"{step}: expected one offline session, found {zips}"
        found[step] = read_offline_session(zips[0])
    return found


@pytest.mark.timeout(200)
def test_train_runs_offline_with_one_session_per_step(offline_run):
    proc, run_dir, seconds = offline_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 120, f"tiny offline pipeline took {seconds:.0f} s (limit 120 s)"
    assert f"python -m src.main import-offline {run_dir}" in proc.stdout
    assert "test BLEU:" in proc.stdout and f"run folder:      {run_dir}" in proc.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and all(status["steps"][s]["status"] == "completed" for s in STEPS)
    assert len({s.task["id"] for s in sessions(run_dir).values()}) == 5  # five distinct tasks


@pytest.mark.timeout(200)
def test_each_session_carries_what_its_step_should(offline_run):
    proc, run_dir, _ = offline_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = sessions(run_dir)
    titles = {step: {title for title, _ in session.scalars} for step, session in s.items()}
    images = {step: {image.title for image in session.images} for step, session in s.items()}

    assert {"pairs per split", "dropped rows"} <= titles["data_prep"]
    assert "data card" in images["data_prep"] and {"dataset", "data_card"} <= set(s["data_prep"].artifacts)

    assert {"tokenizer", "tokenized", "tokenization_report"} <= set(s["tokenize"].artifacts)

    assert {"train", "valid", "learning_rate", "grad_norm", "grad_norm_by_layer",
            "throughput"} <= titles["train"]
    assert {"attention/encoder_self", "attention/decoder_self", "attention/cross",
            "gradient norms"} <= images["train"]
    assert "transformer-de-en-weights" in s["train"].artifacts and s["train"].models

    assert {"test", "test/greedy", "test/beam"} <= titles["evaluate"]
    assert {"attention/cross"} <= images["evaluate"] and "metrics" in s["evaluate"].artifacts
    assert any(plot[0] == "translations" for plot in s["evaluate"].plots)

    assert "registration" in s["register"].artifacts
    # one model per trained checkpoint: train registers it, register only tags it (applied on import)
    assert [len(session.models) for session in s.values()] == [0, 0, 1, 0, 0]
    update = json.loads(s["register"].read_bytes(s["register"].artifacts["model-update"]))
    status = json.loads((run_dir / "status.json").read_text())
    assert update["model_id"] == status["steps"]["train"]["output"]["model_id"]
    assert update["source_task_id"] == s["train"].task_id and update["name"] == s["train"].models[0].name
    assert update["tags"][0] in {"production",
                                 "candidate"} and update["metadata"]["stage"] == update["tags"][0]

    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert {"bleu", "chrf"} <= set(metrics["beam"]) and metrics["test"]["perplexity"] > 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.dmodel=3"], "model.dmodel: unknown key (allowed: "),
        (["model.d_model=abc"], "model.d_model: Input should be a valid integer"),
        (["--queue", "nope", "--dry-run"],
         "unknown queue 'nope', expected one of ['cpu', 'gpu', 'services']"),
    ],
)
def test_bad_input_fails_fast_with_a_clear_message(tmp_path, args, message):
    proc = run_cli(["train", "--config", "config/tiny.yaml", *args], clean_env(tmp_path / "home"), timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


@pytest.mark.timeout(60)
def test_unreachable_server_fails_within_seconds(tmp_path):
    env = clean_env(tmp_path / "home", CLEARML_API_HOST="http://127.0.0.1:9", CLEARML_WEB_HOST="http://127.0.0.1:9",
                    CLEARML_FILES_HOST="http://127.0.0.1:9", CLEARML_API_ACCESS_KEY="k",
                    CLEARML_API_SECRET_KEY="s")
    start = time.perf_counter()
    proc = run_cli(["train", "--config", "config/tiny.yaml", "--local"], env, timeout=50)
    assert proc.returncode != 0
    assert time.perf_counter() - start < 20
    assert "127.0.0.1:9" in proc.stderr + proc.stdout


@pytest.mark.timeout(120)
def test_failed_step_marks_the_run_folder(tmp_path):
    missing = tmp_path / "no-such-file.tsv"
    proc = run_cli(["train", "--config", "config/tiny.yaml", f"output_dir={tmp_path / 'runs'}",
                    "data.source=local",
                    f"data.local_path={missing}", "data.src_column=de", "data.tgt_column=en"],
                   clean_env(tmp_path / "home"), timeout=100)
    assert proc.returncode == 1
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.is_symlink()]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["failed_step"] == "data_prep"
    assert str(missing) in status["reason"]
