"""The translation task: batches, loss weights, validation, upsampling; what the shared loop relies on."""

import pytest
import torch
from datasets import Dataset

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.experiment import load_config
from src.models.builders import build
from src.tasks.translation.task import ParallelCorpus, TranslationTask, teacher_forced_metrics
from src.training.loss import translation_loss

PAIRS = {"src_ids": [[5, 6, 7, EOS_ID], [8, EOS_ID], [9, 10, EOS_ID]],
         "tgt_ids": [[BOS_ID, 11, 12, EOS_ID], [BOS_ID, 13, 14, 15, EOS_ID], [BOS_ID, 16, EOS_ID]]}


@pytest.fixture
def task():
    corpus = ParallelCorpus.from_dataset(Dataset.from_dict(PAIRS))
    return TranslationTask(corpus, corpus, (20, 20))


def test_a_batch_is_teacher_forced_and_counted(task):
    src, tgt_in, labels = batch = task.batch([0, 1], torch.device("cpu"))
    assert torch.equal(tgt_in[:, 1:], labels[:, :-1])  # the decoder reads the target shifted by one
    assert task.targets(batch) == 3 + 4 and task.tokens(batch) == 7 + 4 + 2  # labels; labels + source tokens
    assert (src == PAD_ID).sum() == 2


def test_the_loss_is_the_label_smoothed_token_mean_and_validation_the_plain_one(task):
    torch.manual_seed(0)
    model = build(load_config("config/tiny.yaml").model, **task.model_sizes()).eval()
    batch = task.batch([0, 1, 2], torch.device("cpu"))
    loss, n = task.loss(model, batch, label_smoothing=0.1)
    expected, _ = translation_loss(model(batch[0], batch[1]), batch[2], PAD_ID, 0.1)
    assert n == task.targets(batch) and torch.allclose(loss, expected)
    metrics = task.validate(model, max_tokens=64, device=torch.device("cpu"))
    plain = teacher_forced_metrics(model, task.valid, 64, torch.device("cpu"))
    assert metrics == {"loss": plain["loss"], "perplexity": plain["perplexity"]}
    with torch.no_grad():
        whole, _ = translation_loss(model(batch[0], batch[1]), batch[2], PAD_ID)
    assert metrics["loss"] == pytest.approx(whole.item(), rel=1e-5)  # token-weighted over batches


def test_upsample_primary_repeats_only_the_corpus_own_pairs():
    from collections import Counter

    from datasets import Dataset

    split = Dataset.from_dict({"src_ids": [[4], [5], [6], [7]],
                               "tgt_ids": [[1, 4, 2], [1, 5, 2], [1, 6, 2], [1, 7, 2]],
                               "extra": [False, True, False, True]})
    corpus = ParallelCorpus.from_dataset(split, upsample_primary=3)
    assert Counter(ids[0] for ids in corpus.src) == {4: 3, 6: 3, 5: 1, 7: 1}
    assert all(t[1] == s[0] for s, t in zip(corpus.src, corpus.tgt))  # pairs stay pairs
    assert len(ParallelCorpus.from_dataset(split)) == 4
    # a split without the column (prepared elsewhere) is used as it is
    assert len(ParallelCorpus.from_dataset(split.remove_columns("extra"), upsample_primary=3)) == 4
