"""``train --config config/vit_tiny.yaml``: the same five steps, offline, for a ViT on Fashion-MNIST."""

import json
from pathlib import Path

import pytest
import torch

from src.experiment import load_config
from src.data.fashion_mnist import CLASS_NAMES, FILES
from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import STEPS, assert_recorded_loss_curve, clean_env, missing_data, run_folder

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    root_dir = load_config("config/vit_tiny.yaml").data.fashion_mnist_path
    if not all((Path(root_dir) / name).is_file() for files in FILES.values() for name in files):
        missing_data(f"Fashion-MNIST not installed in {root_dir} (bash .ci/install)")
    root = tmp_path_factory.mktemp("vit")
    proc = run_src_main(["train", "--config", "config/vit_tiny.yaml", f"output_dir={root / 'runs'}"],
                        clean_env(root / "home"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, run_folder(proc.stdout)


def test_the_five_steps_run_and_report_accuracy(vit_run):
    proc, run_dir = vit_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["labels"] == list(CLASS_NAMES)
    assert sum(map(sum, metrics["confusion"])) == metrics["n_images"] == 1000
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert f"test accuracy:   {metrics['accuracy']:.4f} (1000 images)" in proc.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS)
    history = [
        json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses[-1] < losses[0]  # it learns, even in 30 steps


def test_each_session_holds_what_a_researcher_reviews(vit_run):
    _, run_dir = vit_run
    s = {
        step: read_offline_session(next((run_dir / step / "clearml_offline").glob("*.zip")))
        for step in STEPS}
    assert {"images per split", "class balance/train", "class balance/validation"} <= {
        t for t, _ in s["data_prep"].scalars}
    assert {"data card"} <= {image.title for image in s["data_prep"].images}
    assert {"tokenization/train", "normalisation"} <= {t for t, _ in s["tokenize"].scalars}
    train_titles = {t for t, _ in s["train"].scalars}
    assert {"train", "valid", "grad_norm", "grad_norm_by_layer", "throughput"} <= train_titles
    assert {series for title, series in s["train"].scalars if title == "valid"} == {"loss", "accuracy",
                                                                                    "macro_f1"}
    assert {"attention/cls", "attention/rollout", "gradient norms"} <= {
        image.title for image in s["train"].images}
    assert len(s["train"].models) == 1 and [len(x.models) for x in s.values()].count(0) == 4
    assert {("test", "accuracy"), ("test", "macro_f1"), ("test/precision", "Sneaker"),
            ("test/recall", "Ankle boot")} <= set(s["evaluate"].scalars)
    assert "confusion matrix" in {title for title, _, _ in s["evaluate"].plots}
    assert {"misclassified", "attention/cls", "attention/rollout", "patch embedding"} <= {
        image.title for image in s["evaluate"].images}
    update = json.loads(s["register"].read_bytes(s["register"].artifacts["model-update"]))
    assert update["metadata"]["accuracy"] == pytest.approx(
        json.loads((run_dir / "evaluate" / "metrics.json").read_text())["accuracy"])


def test_the_checkpoint_rebuilds_the_model_with_its_classes_and_stats(vit_run):
    from src.inference import load_for_inference
    from src.training.checkpoint import load_checkpoint

    _, run_dir = vit_run
    best = run_dir / "train" / "checkpoints" / "best.pt"
    model = load_for_inference(best, "cpu")
    assert model.family == "vit" and model.labels == list(CLASS_NAMES) and model.tokenizers == {}
    stats = model.image_stats
    assert stats == load_checkpoint(best)["image_stats"]
    # Fashion-MNIST: about 0.29 and 0.35
    assert 0.2 < stats["mean"][0] < 0.4 and 0.25 < stats["std"][0] < 0.45
    with torch.no_grad():
        assert model.model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_evaluate_scores_the_run_and_idx_files_of_its_test_images_as_the_pipeline_did(vit_run, tmp_path,
                                                                                      capsys):
    """Issue 26: ``evaluate`` refused every family but translation. The run's own test split, and the
    same test images as IDX files, score the accuracy of the run's evaluate step."""
    import gzip

    from src.data.fashion_mnist import IMAGE_MAGIC, LABEL_MAGIC, read_idx
    from src.main import main

    _, run_dir = vit_run
    expected = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert main(["evaluate", str(run_dir), "--device", "cpu"]) == 0
    assert f"accuracy:    {expected['accuracy']:.4f}" in capsys.readouterr().out
    cfg = load_config("config/vit_tiny.yaml").data
    # the run's test split: the first max_rows
    for name, magic in zip(FILES["test"], (IMAGE_MAGIC, LABEL_MAGIC)):
        array = read_idx(Path(cfg.fashion_mnist_path) / name, magic, cfg.max_rows)
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (tmp_path / name).write_bytes(gzip.compress(header + array.tobytes()))
    assert main(["evaluate", str(run_dir), "--device", "cpu", "--split",
                 str(tmp_path / FILES["test"][0])]) == 0
    written = json.loads(next((run_dir / "evaluate").glob("metrics_file-*idx3*.json")).read_text())
    assert (written["accuracy"], written["confusion"], written["n_images"]) == \
        (expected["accuracy"], expected["confusion"], expected["n_images"])


def test_the_loss_curve_is_the_recorded_one(vit_run):
    """No silent change to the training arithmetic of this family
    (tests/pipelines/fixtures/loss_curves.json)."""
    assert_recorded_loss_curve(vit_run[1], "vit_tiny")
