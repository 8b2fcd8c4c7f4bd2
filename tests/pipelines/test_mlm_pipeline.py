"""``train --config config/imdb_mlm_tiny.yaml``: masked-LM pretraining end to end, offline; the run is scored
again by ``evaluate RUN`` on the same fixed mask, and ``export``/``serve`` refuse it in one line."""

import json
import math
from pathlib import Path

import pytest

from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import STEPS, clean_env, imdb_data_dir, train_completed

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    data_dir = imdb_data_dir()  # skips (or fails in CI) without the CSV
    root = tmp_path_factory.mktemp("mlm")
    run_dir = train_completed("config/imdb_mlm_tiny.yaml", root, STEPWISE_DATA_DIR=data_dir)
    return run_dir, clean_env(root / "home", STEPWISE_DATA_DIR=data_dir)


def test_pretraining_learns_and_reports_the_masked_token_loss_and_accuracy(mlm_run):
    from tokenizers import Tokenizer

    run_dir, _ = mlm_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    tokenizer = Tokenizer.from_file(str(run_dir / "tokenize" / "tokenizer.json"))
    assert tokenizer.token_to_id("[MASK]") == tokenizer.get_vocab_size() - 1
    # below the uniform guess over the vocabulary: it has learnt at least which tokens are frequent
    assert metrics["loss"] < math.log(tokenizer.get_vocab_size()) - 0.3
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 0.0 < metrics["accuracy"] < 1.0 and metrics["n_masked"] > 0.1 * metrics["n_texts"]
    lines = (run_dir / "train" / "train_history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    valid = [row["valid_loss"] for row in history if "valid_loss" in row]
    assert valid[-1] < valid[0]
    card = json.loads((run_dir / "data_prep" / "data_card.json").read_text())
    assert sum(card["counts"].values()) == card["classifier_split"]["train"]
    from src.runs.table import test_metric  # the headline of `runs list` and `runs compare`

    assert test_metric(metrics) == f"masked loss {metrics['loss']:.3f} (acc {metrics['accuracy']:.3f})"


def test_each_session_holds_the_masked_predictions_and_the_gate(mlm_run):
    run_dir, _ = mlm_run
    s = {step: read_offline_session(next((run_dir / step / "clearml_offline").glob("*.zip")))
         for step in STEPS}
    assert {series for title, series in s["train"].scalars if title == "valid"} == {"loss", "accuracy",
                                                                                    "perplexity"}
    assert "attention/masked" in {image.title for image in s["train"].images}
    assert "masked predictions" in {title for title, _, _ in s["train"].plots}
    assert "masked predictions" in {title for title, _, _ in s["evaluate"].plots}
    assert {("test", "loss"), ("test", "accuracy"), ("test", "perplexity")} <= set(s["evaluate"].scalars)
    update = json.loads(s["register"].read_bytes(s["register"].artifacts["model-update"]))
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert update["metadata"]["masked_loss"] == pytest.approx(metrics["loss"])
    assert update["metadata"]["masked_accuracy"] == pytest.approx(metrics["accuracy"])


def test_evaluate_scores_the_same_fixed_mask_and_export_and_serve_refuse_in_one_line(mlm_run):
    run_dir, env = mlm_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    proc = run_src_main(["evaluate", str(run_dir)], env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"masked-token loss:     {metrics['loss']:.4f}" in proc.stdout
    assert f"masked-token accuracy: {metrics['accuracy']:.4f}" in proc.stdout
    for command in ("export", "serve"):
        refused = run_src_main([command, str(run_dir)], env, timeout=120)
        errors = [line for line in refused.stderr.splitlines() if "| ERROR" in line]
        assert refused.returncode == 1 and len(errors) == 1, refused.stderr[-3000:]
        assert "encoder_mlm" in errors[0]
        assert "fine-tune a classifier from it (model.init_from=RUN)" in errors[0]


def test_a_classifier_fine_tuned_from_the_pretraining_run_starts_from_its_encoder(mlm_run, tmp_path):
    """The two-pipeline chain's link: ``model.init_from=<the masked-LM run>`` resolves to its best checkpoint,
    takes its sizes and tokenizer ([MASK] included), and the classifier starts with every embedding and
    encoder tensor of the pretrained model; the masked-LM head is left out and the classifier head is new."""
    import torch

    from src.experiment import load_config
    from src.models.builders import build
    from src.orchestration.init_source import resolve_init_from
    from src.training.checkpoint import load_checkpoint
    from src.training.init_from import initialise_from

    run_dir, _ = mlm_run
    cfg = resolve_init_from(load_config("config/imdb_tiny.yaml", [f"model.init_from={run_dir}",
                                                                  f"output_dir={tmp_path}"]))
    assert cfg.model.init_from.endswith("best.pt")
    pretrained = load_checkpoint(Path(cfg.model.init_from))["model"]
    vocab = pretrained["embeddings.src.weight"].shape[0]
    classifier = build(cfg.model, vocab_size=vocab, n_classes=2, pad_id=0)
    report = initialise_from(classifier, cfg.model.init_from, cfg.model.family, vocab)
    encoder = [name for name in pretrained if name.startswith(("embeddings.", "encoder."))]
    own = classifier.state_dict()
    assert encoder and all(torch.equal(own[name], pretrained[name]) for name in encoder)
    assert all(name.startswith("mlm_head.") for name in report.ignored) and len(report.ignored) == 5
    assert all(name.startswith("head.") for name in report.new)
