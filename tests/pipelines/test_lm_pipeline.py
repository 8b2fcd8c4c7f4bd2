"""``train --config config/lm_tiny.yaml``: the five steps, offline, for a character-level GPT on
Austen + Brown."""

import json
import re

import pytest

from src.data.prose import data_root
from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import STEPS, assert_recorded_loss_curve, clean_env, missing_data, run_folder

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root_dir = data_root()
    if not (root_dir / "austen").is_dir() or not (root_dir / "brown").is_dir():
        missing_data(f"Austen/Brown not cached under {root_dir}: run bash .ci/install")
    root = tmp_path_factory.mktemp("lm")
    env = clean_env(root / "home", STEPWISE_DATA_DIR=str(root_dir))  # the run gets an empty HOME
    proc = run_src_main(["train", "--config", "config/lm_tiny.yaml", f"output_dir={root / 'runs'}"], env,
                        timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, run_folder(proc.stdout), env


def test_the_five_steps_run_and_report_bits_per_character(lm_run):
    proc, run_dir, _ = lm_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert {"loss", "perplexity", "bpc"} <= set(metrics)
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / 0.6931471805599453, rel=1e-3)  # character level
    assert 1.0 < metrics["bpc"] < 7.0  # below log2(84 characters) = 6.4 once it has learnt anything
    assert f"test bpc:        {metrics['bpc']:.4f}" in proc.stdout and "test perplexity:" in proc.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS)
    history = [
        json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
    valid = [row["valid_loss"] for row in history if "valid_loss" in row]
    assert valid[-1] < valid[0]


def test_each_session_holds_what_a_researcher_reviews(lm_run):
    _, run_dir, _ = lm_run
    s = {
        step: read_offline_session(next((run_dir / step / "clearml_offline").glob("*.zip")))
        for step in STEPS}
    assert {"words per split", "words per split/austen", "words per split/brown"} <= {
        t for t, _ in s["data_prep"].scalars}
    train_titles = {t for t, _ in s["train"].scalars}
    assert {"train", "valid", "throughput", "grad_norm", "grad_norm_by_layer"} <= train_titles
    assert {series for title, series in s["train"].scalars if title == "valid"} == {"loss", "perplexity",
                                                                                    "bpc"}
    assert {series for title, series in s["train"].scalars if title == "train"} >= {"loss", "perplexity"}
    assert "attention/decoder_self" in {image.title for image in s["train"].images}
    assert "samples" in {title for title, _, _ in s["train"].plots}
    assert len(s["train"].models) == 1 and [len(x.models) for x in s.values()].count(0) == 4
    assert {("test", "bpc"), ("test", "perplexity"), ("test", "loss")} <= set(s["evaluate"].scalars)
    assert "samples" in {title for title, _, _ in s["evaluate"].plots}
    update = json.loads(s["register"].read_bytes(s["register"].artifacts["model-update"]))
    assert update["metadata"]["bpc"] == pytest.approx(
        json.loads((run_dir / "evaluate" / "metrics.json").read_text())["bpc"])


def test_generate_continues_a_prompt_and_translate_refuses_the_model(lm_run):
    _, run_dir, env = lm_run
    proc = run_src_main(["generate", str(run_dir), "It was", "--max-new-tokens", "12", "--seed", "0"], env,
                        timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("It was") and len(proc.stdout.rstrip("\n")) > len("It was")
    again = run_src_main(["generate", str(run_dir), "It was", "--max-new-tokens", "12", "--seed", "0"], env,
                         timeout=120)
    assert again.stdout == proc.stdout
    refused = run_src_main(["translate", str(run_dir), "Hallo"], env, timeout=120)
    assert refused.returncode == 1 and "decoder_lm" in refused.stderr


def test_runs_list_shows_bpc(lm_run):
    _, run_dir, env = lm_run
    proc = run_src_main(["runs", "list", "--runs-dir", str(run_dir.parent)], env, timeout=60)
    assert proc.returncode == 0 and "bpc " in proc.stdout


def test_evaluate_scores_the_test_text_as_the_pipeline_did(lm_run, capsys):
    """Issue 26: ``evaluate`` refused every family but translation. The run's test text, given as a
    plain .txt file, scores the bpc of the run's evaluate step; the metrics go into the run folder.
    (tests/inference/test_evaluate_families.py checks that the run's own stream scores the same as its
    file.)"""
    from src.main import main

    _, run_dir, _ = lm_run
    expected = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert main(
        ["evaluate", str(run_dir), "--device", "cpu", "--split", str(run_dir / "tokenize" / "test.txt")]) == 0
    written = json.loads(next((run_dir / "evaluate").glob("metrics_file-test.txt_*.json")).read_text())
    assert written["bpc"] == pytest.approx(expected["bpc"], rel=1e-6)
    assert written["n_characters"] == expected["n_characters"]
    assert f"bpc:         {expected['bpc']:.4f}" in capsys.readouterr().out


def test_runs_compare_across_families_shows_each_its_own_metrics(lm_run, tiny_runs):
    _, run_dir, env = lm_run
    proc = run_src_main(["runs", "compare", str(run_dir), str(tiny_runs.run_dirs[0])], env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = proc.stdout.split("results:")[1]
    row = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in results.splitlines())}
    lm_metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    mt_metrics = json.loads((tiny_runs.run_dirs[0] / "evaluate" / "metrics.json").read_text())
    assert row["task"] == ["language_modeling", "translation"]
    assert row["bpc"] == [f"{lm_metrics['bpc']:.4f}", "-"]
    assert row["BLEU beam"] == ["-", f"{mt_metrics['beam']['bleu']:.2f}"]


def test_the_loss_curve_is_the_recorded_one(lm_run):
    """No silent change to the training arithmetic of this family
    (tests/pipelines/fixtures/loss_curves.json)."""
    assert_recorded_loss_curve(lm_run[1], "lm_tiny")
