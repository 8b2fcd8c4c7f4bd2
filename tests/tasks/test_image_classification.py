"""The image-classification task: normalisation, batches, augmentation only in training, metrics, probe."""

import pytest
import torch

from src.config.model import ModelConfig
from src.models.vit import build_vit
from src.tasks.image_classification.task import (
    ImageAttentionProbe,
    ImageClassificationTask,
    ImageSplit,
    ImageStats,
    predict_images,
)

CPU = torch.device("cpu")
VIT = ModelConfig(family="vit", d_model=16, n_heads=2, n_encoder_layers=2, d_ff=32, dropout=0.0,
                  norm_first=True,
                  activation="gelu")


def split(n=24, seed=0) -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
                      torch.arange(n) % 10)


def task(augmentation="crop_flip") -> ImageClassificationTask:
    train = split()
    return ImageClassificationTask(train, split(12, seed=1), ImageStats.of(train.images), 10, 50,
                                   augmentation,
                                   eval_batch_size=5)


def test_stats_are_the_training_pixels_mean_and_std():
    images = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(4, 1, 1, 1)
    stats = ImageStats.of(images)
    # unbiased std
    assert stats.mean == pytest.approx((0.5,)) and stats.std == pytest.approx((0.57735,), abs=1e-5)
    normalised = task("none").stats.normalise(task("none").train.pixels(range(24), CPU))
    assert (normalised.mean().item() == pytest.approx(0.0, abs=1e-5)
            and normalised.std().item() == pytest.approx(1.0, abs=1e-3))


def test_a_batch_is_batch_size_normalised_images_and_their_labels():
    t = task("none")
    images, labels = t.batch([3, 0, 7], CPU)
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32 and labels.tolist() == [3, 0, 7]
    torch.testing.assert_close(images, t.stats.normalise(t.train.images[[3, 0, 7]].float() / 255))
    assert t.lengths() == ([1] * 24, [1] * 24)  # the sampler's budget is then the batch size
    assert t.targets((images, labels)) == 3 and t.tokens((images, labels)) == 3 * 50
    assert t.model_sizes() == {"n_classes": 10}


def test_training_batches_are_augmented_validation_is_not():
    t = task("crop_flip")
    torch.manual_seed(0)
    first = t.batch(list(range(24)), CPU)[0]
    torch.manual_seed(0)
    assert torch.equal(first, t.batch(list(range(24)), CPU)[0])  # same RNG state, same batch: resume is exact
    assert not torch.equal(first, task("none").batch(list(range(24)), CPU)[0])
    model = build_vit(VIT, 10)
    torch.manual_seed(0)
    once = t.validate(model, 0, CPU)
    assert once == t.validate(model, 0, CPU) and set(once) == {"loss", "accuracy", "macro_f1"}
    state = torch.get_rng_state()
    predict_images(model, t.valid, t.stats, CPU)
    assert torch.equal(state, torch.get_rng_state())  # scoring draws no random numbers


def test_predictions_do_not_depend_on_the_evaluation_batch_size():
    t, model = task(), build_vit(VIT, 10)
    with torch.no_grad():
        model.head.weight.normal_()
    small, loss_small = predict_images(model, t.valid, t.stats, CPU, batch_size=5)
    large, loss_large = predict_images(model, t.valid, t.stats, CPU, batch_size=100)
    torch.testing.assert_close(small, large)
    assert loss_small == pytest.approx(loss_large)
    assert small.shape == (12, 10) and torch.allclose(small.sum(-1), torch.ones(12))


def test_the_loss_at_a_zero_head_is_log_k():
    t, model = task("none"), build_vit(VIT, 10)
    loss, n = t.loss(model, t.batch(list(range(8)), CPU), label_smoothing=0.1)
    assert n == 8 and loss.item() == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-5)


class RecordingTracker:
    def __init__(self):
        self.figures = []

    def log_figure(self, title, series, figure, step):
        self.figures.append((title, series, step, len(figure.axes)))


def test_probe_draws_each_layer_and_head_and_the_rollout():
    t, model = task(), build_vit(VIT, 10)
    probe = ImageAttentionProbe(ImageSplit(t.valid.images[:2], t.valid.labels[:2]), t.stats,
                                [str(k) for k in range(10)])
    tracker = RecordingTracker()
    model.train()
    probe.report(model, tracker, step=7)
    assert model.training  # put back as found
    assert [(title, series, step) for title, series, step, _ in tracker.figures] == [
        ("attention/cls", "image 0", 7), ("attention/cls", "image 1", 7), ("attention/rollout",
                                                                           "probe images", 7)]
    assert tracker.figures[0][3] == 2 * 2  # layers x heads


def test_a_resumed_run_with_augmentation_follows_the_uninterrupted_loss_curve(tmp_path):
    """Crops and flips come from torch's RNG, whose state the checkpoint carries: resume is exact."""
    from src.experiment import validate_config
    from src.tracking import NullTracker
    from src.training.trainer import Trainer

    torch.set_num_threads(1)

    def trainer(run_dir, max_steps):
        cfg = validate_config({
            "task": "image_classification", "data": {"source": "fashion_mnist", "augmentation": "crop_flip"},
            "batching": {"batch_size": 6}, "model": VIT.model_dump(),
            "training": {"max_steps": max_steps, "schedule": "inverse_sqrt", "warmup_steps": 2, "lr": 3e-3,
                         "log_every": 1, "eval_every": 4, "checkpoint_every": 4, "weight_decay": 0.05},
            "tracking": {"enabled": False}})
        return Trainer(cfg, task(), run_dir, NullTracker())

    straight = trainer(tmp_path / "straight", 8).fit()
    trainer(tmp_path / "split", 4).fit()
    resumed = trainer(tmp_path / "split", 8)
    assert resumed.resume() and resumed.step == 4
    result = resumed.fit()
    expected = {row["step"]: row["loss"] for row in straight.history}
    got = {row["step"]: row["loss"] for row in result.history}
    assert got.keys() == expected.keys() and all(
        got[s] == pytest.approx(expected[s], abs=1e-6) for s in expected)
