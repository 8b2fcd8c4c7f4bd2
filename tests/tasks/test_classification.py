"""The classification task: metrics by hand, batches, [CLS] encoding, and the shared loop training it."""

import json

import pytest
import torch
from datasets import Dataset

from src.data.special_tokens import PAD_ID
from src.data.tokenizer import TokenizerConfig, load_tokenizer, train_one
from src.experiment import load_config
from src.tasks.classification.task import (
    CLS_ID,
    ClassificationProbe,
    ClassificationTask,
    LabelledCorpus,
    classification_metrics,
    encode_texts,
)
from src.tracking import NullTracker
from src.training.trainer import Trainer


def test_metrics_match_a_hand_computed_example():
    # true:      0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    metrics = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2], n_classes=3)
    assert metrics["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx([1.0, 0.5, 0.5]) and metrics["recall"] == pytest.approx(
        [2 / 3, 0.5, 1.0])
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert classification_metrics([1, 1], [0, 0], 2)["precision"] == [0.0, 0.0]  # no division by zero
    # a class neither in the labels nor predicted does not drag macro-F1 down
    assert classification_metrics([0, 1], [0, 1], 3)["macro_f1"] == 1.0


def test_batches_are_right_padded_with_their_labels():
    corpus = LabelledCorpus(ids=[[CLS_ID, 5, 6], [CLS_ID, 7]], labels=[1, 0])
    tokens, labels = corpus.batch([1, 0], torch.device("cpu"))
    assert tokens.tolist() == [[CLS_ID, 7, PAD_ID], [CLS_ID, 5, 6]] and labels.tolist() == [0, 1]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = ["a good film", "a bad film", "good acting", "bad plot", "the film was good",
             "the plot was bad"] * 5
    return load_tokenizer(train_one(Dataset.from_dict({"text": texts}), ["text"],
                                    TokenizerConfig(vocab_size=300, min_frequency=1),
                                    tmp_path_factory.mktemp("tok") / "tokenizer.json"))


def test_texts_start_with_cls_and_are_cut_to_the_budget(tokenizer):
    ids, truncated = encode_texts(tokenizer, ["a good film", "the film was good " * 20], max_tokens=8)
    assert all(row[0] == CLS_ID for row in ids) and len(ids[1]) == 8 and len(ids[0]) < 8
    assert truncated == 1


@pytest.mark.parametrize("family", ["encoder_classifier", "lstm_classifier", "rnn_classifier"])
def test_the_shared_loop_trains_a_classifier(tokenizer, tmp_path, family):
    """good/bad reviews: the one training loop, checkpoints and heatmaps, unchanged, for a classifier."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    words = {0: ["bad", "awful", "dull"], 1: ["good", "great", "fine"]}
    g = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for i in range(240):
        label = i % 2
        pick = words[label][int(torch.randint(0, 3, (1,), generator=g))]
        texts.append(f"the film was {pick} and the plot")
        labels.append(label)
    ids, _ = encode_texts(tokenizer, texts, max_tokens=32)
    train, valid = LabelledCorpus(ids[:200], labels[:200]), LabelledCorpus(ids[200:], labels[200:])
    probe = ClassificationProbe.from_ids(valid.ids[:1], tokenizer)
    task = ClassificationTask(train, valid, tokenizer.get_vocab_size(), 2, probe)
    cfg = load_config("config/tiny.yaml",
                      ["task=classification", "data.source=imdb", f"model.family={family}",
                                           "model.dropout=0.0", "training.max_steps=120",
                                           "training.eval_every=40", "training.checkpoint_every=40",
                                           "tracking.heatmap_every=60", "training.label_smoothing=0.0"])
    tracker = NullTracker(output_dir=tmp_path)
    result = Trainer(cfg, task, tmp_path, tracker).fit()
    assert result.valid_history[-1]["valid_accuracy"] > 0.9, result.valid_history
    assert {"loss", "accuracy", "macro_f1"} == {
        series for title, series in tracker.scalars if title == "valid"}
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert json.loads(best["config"])["model"]["family"] == family
    heatmaps = list((tmp_path / "plots").glob("attention_cls/*.png"))
    assert bool(heatmaps) == (family == "encoder_classifier")  # an RNN has no attention to draw
