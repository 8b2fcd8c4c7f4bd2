"""``train --config config/imdb_tiny.yaml``: the same five steps, offline, for a text classifier on IMDB."""

import json

import pytest
import torch

from tests.clearml_session import read_offline_session
from tests.pipelines.conftest import STEPS, assert_recorded_loss_curve

pytestmark = pytest.mark.timeout(300)

# imdb_run: the session's imdb-tiny run (tests/conftest.py); its data steps seed other IMDB runs


def test_the_five_steps_run_and_report_accuracy(imdb_run):
    proc, run_dir = imdb_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["labels"] == ["negative", "positive"]
    assert sum(map(sum, metrics["confusion"])) == metrics["n_texts"] > 0
    assert f"test accuracy:   {metrics['accuracy']:.4f}" in proc.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS)


def test_each_session_holds_what_a_researcher_reviews(imdb_run):
    _, run_dir = imdb_run
    s = {
        step: read_offline_session(next((run_dir / step / "clearml_offline").glob("*.zip")))
        for step in STEPS}
    assert {"texts per split", "class balance/train", "dropped rows"} <= {
        t for t, _ in s["data_prep"].scalars}
    train_titles = {t for t, _ in s["train"].scalars}
    assert {"train", "valid", "grad_norm", "grad_norm_by_layer", "resources"} <= train_titles
    assert {series for title, series in s["train"].scalars if title == "valid"} == {"loss", "accuracy",
                                                                                    "macro_f1"}
    assert {"attention/cls", "gradient norms"} <= {image.title for image in s["train"].images}
    assert len(s["train"].models) == 1 and [len(x.models) for x in s.values()].count(0) == 4
    assert {("test", "accuracy"), ("test", "macro_f1"), ("test/precision", "positive"),
            ("test/recall", "negative")} <= set(s["evaluate"].scalars)
    plots = {title for title, _, _ in s["evaluate"].plots}
    assert {"confusion matrix", "misclassified"} <= plots
    update = json.loads(s["register"].read_bytes(s["register"].artifacts["model-update"]))
    assert update["metadata"]["accuracy"] == pytest.approx(
        json.loads((run_dir / "evaluate" / "metrics.json").read_text())["accuracy"])


def test_the_checkpoint_carries_its_classes_and_tokenizer(imdb_run):
    from src.inference import load_for_inference

    _, run_dir = imdb_run
    model = load_for_inference(run_dir / "train" / "checkpoints" / "best.pt", "cpu")
    assert model.family == "encoder_classifier" and model.labels == ["negative", "positive"]
    ids = model.tokenizers["text"].encode("A wonderful film.").ids
    with torch.no_grad():
        assert model.model(torch.tensor([[1, *ids]])).shape == (1, 2)


def test_evaluate_scores_the_run_and_a_file_of_its_test_texts_as_the_pipeline_did(imdb_run, tmp_path, capsys):
    """Issue 26: ``evaluate`` refused every family but translation. The run's own test split, and its
    texts and labels written to a .jsonl file, score the accuracy of the run's evaluate step."""
    from datasets import load_from_disk

    from src.main import main

    _, run_dir = imdb_run
    expected = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert main(["evaluate", str(run_dir), "--device", "cpu"]) == 0
    assert f"accuracy:    {expected['accuracy']:.4f}" in capsys.readouterr().out
    test = load_from_disk(str(run_dir / "data_prep" / "dataset"))["test"]
    names = test.features["label"].names
    rows = [json.dumps({"review": text, "sentiment": names[label]}) for text, label in zip(test["text"],
                                                                                           test["label"])]
    (tmp_path / "test.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["evaluate", str(run_dir), "--device", "cpu", "--split", str(tmp_path / "test.jsonl")]) == 0
    path = next((run_dir / "evaluate").glob("metrics_file-test.jsonl_*.json"))
    written = json.loads(path.read_text())
    path.unlink()  # the session's shared run stays as it was
    assert (written["accuracy"], written["confusion"]) == (expected["accuracy"], expected["confusion"])
    assert written["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl"]


def test_the_loss_curve_is_the_recorded_one(imdb_run):
    """No silent change to the training arithmetic of this family
    (tests/pipelines/fixtures/loss_curves.json)."""
    assert_recorded_loss_curve(imdb_run[1], "imdb_tiny")
