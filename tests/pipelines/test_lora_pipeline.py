"""``train --config config/imdb_lora_tiny.yaml``: LoRA on a pretrained encoder through the five steps.
Only the adapters and the new head move; the checkpoint says it is a LoRA one; serve (and evaluate,
predict and export, which load it the same way) answer with the adapters merged into the weights, as
the adapted model does to 1e-5; a family without attention is refused in one line before any step."""

import json

import pytest
import torch

from src.config.serving import ServingConfig
from src.experiment import validate_config
from src.inference.loader import model_sizes
from src.models.builders import build
from src.training.checkpoint import load_checkpoint
from src.training.checkpoint_format import stored_config
from src.training.finetune import prepare_model
from tests.clearml_stub.stub import run_src_main
from tests.models.bert_folder import save_bert_folder
from tests.pipelines.conftest import STEPS, clean_env, imdb_data_dir, seed_step_cache, train_offline

pytestmark = pytest.mark.timeout(300)
REVIEWS = ["A wonderful film, I loved it.", "Terrible acting and a dull plot, far too long.",
           "The best movie this year, with a brilliant cast.", "Boring."]


@pytest.fixture(scope="module")
def lora_run(imdb_run, tmp_path_factory):
    """A masked-LM BERT folder: the encoder is pretrained, the classifier's head is new."""
    root = tmp_path_factory.mktemp("lora")
    seed_step_cache(root, imdb_run[1])  # data_prep: the session's imdb-tiny run's
    folder = save_bert_folder(root / "bert", layers=1, width=32, positions=128, mlm=True)
    proc, run_dir = train_offline("config/imdb_lora_tiny.yaml", root, f"model.init_from={folder}",
                                  STEPWISE_DATA_DIR=imdb_data_dir())
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS), status
    return folder, run_dir, proc.stderr


def adapted_model(path):
    """The trained model as it trained: the frozen weights and the adapters beside them, unmerged."""
    state = load_checkpoint(path)
    cfg = validate_config(stored_config(state))
    from tokenizers import Tokenizer

    tokenizers = {"text": Tokenizer.from_str(state["tokenizers"]["text"])}
    model = build(cfg.model, **model_sizes(state["family"], tokenizers, list(state["labels"]), 0))
    prepare_model(model, cfg.training, cfg.model.family)
    model.load_state_dict(state["model"])
    return model.eval(), tokenizers["text"], cfg


def test_only_the_adapters_and_the_head_moved_and_the_checkpoint_says_it_is_lora(lora_run):
    from src.training.init_from import source_state

    folder, run_dir, log = lora_run
    best = load_checkpoint(run_dir / "train" / "checkpoints" / "best.pt")
    assert best["lora"] == {"rank": 4, "alpha": 8.0, "targets": ["q", "v"]}
    assert "LoRA r=4, alpha=8 on q+v of 1 attention layers: 1,634 of 18,242 parameters train" in log
    pretrained, _ = source_state(str(folder), "encoder_classifier", None)
    kept = [name for name in best["model"] if name in pretrained]
    assert len(kept) == 17 and not any(name.startswith("head.") for name in kept)
    for name in kept:  # bit-identical after 30 steps
        assert torch.equal(best["model"][name], pretrained[name]), name
    adapters = [name for name in best["model"] if ".lora_" in name]
    assert len(adapters) == 4 and any(best["model"][n].abs().sum() > 0 for n in adapters if "lora_B" in n)


def test_serving_a_lora_checkpoint_answers_as_the_adapted_model(lora_run):
    """The server's model (``load_for_inference``, as evaluate, predict and export load it) has the adapters
    merged into plain weights and gives the adapted model's probabilities to 1e-5."""
    from src.inference.classify import classify_texts
    from src.serving.predictor import Preprocess
    from src.tasks.classification.task import encode_texts

    _, run_dir, _ = lora_run
    path = run_dir / "train" / "checkpoints" / "best.pt"
    served = Preprocess(ServingConfig(device="cpu")).load(str(path))
    assert not any(".lora_" in name for name, _ in served.model.named_parameters())  # merged: a plain model
    answers = classify_texts(served, REVIEWS)
    model, tokenizer, cfg = adapted_model(path)
    for text, answer in zip(REVIEWS, answers, strict=True):
        ids, _ = encode_texts(tokenizer, [text], cfg.tokenizer.max_tokens_per_sentence)
        with torch.no_grad():
            expected = model(torch.tensor(ids)).softmax(-1)[0]
        got = torch.tensor([answer["probabilities"][label] for label in served.labels])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.slow  # an ONNX export and its parity check: 10-20 s on 2 shared cores
def test_the_onnx_export_of_a_lora_checkpoint_is_the_merged_model(lora_run, tmp_path):
    from src.export.exporter import export_checkpoint
    from src.inference.classify import classify_texts
    from src.inference.loader import load_for_inference

    _, run_dir, _ = lora_run
    path = run_dir / "train" / "checkpoints" / "best.pt"
    export_checkpoint(path, tmp_path / "export")  # checks its graphs against the merged PyTorch model
    onnx = classify_texts(load_for_inference(tmp_path / "export", backend="onnx"), REVIEWS)
    torch_answers = classify_texts(load_for_inference(path, "cpu"), REVIEWS)
    for a, b in zip(onnx, torch_answers, strict=True):
        for label, p in b["probabilities"].items():
            assert a["probabilities"][label] == pytest.approx(p, abs=1e-4)


def test_lora_on_a_family_without_attention_fails_in_one_line_before_any_step(tmp_path):
    proc = run_src_main(["train", "--config", "config/imdb_lora_tiny.yaml", "model.family=lstm_classifier",
                         f"output_dir={tmp_path / 'runs'}"], clean_env(tmp_path / "home"), timeout=120)
    lines = proc.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if "| ERROR" in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]  # 2: a config error, as any other
    assert "invalid config config/imdb_lora_tiny.yaml:" in lines[errors[0]]
    assert lines[errors[0] + 1].strip().startswith(  # the reason, on one line
        "training.finetune=lora adapts the attention projections; model.family='lstm_classifier' has none")
    assert not (tmp_path / "runs").exists()
