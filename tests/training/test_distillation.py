"""Distillation (``src/training/distillation.py``): the loss is Hinton et al.'s formula, its gradients
behave as the paper says at the limits, the student starts from the teacher's chosen layers, and cached
teacher logits are the on-the-fly ones."""

import json

import pytest
import torch

from src.experiment import load_config
from src.models.hf_config import InitSourceError
from src.orchestration.init_source import resolve_distill_from
from src.tracking import NullTracker
from src.training.distillation import distillation_loss, teacher_layers
from src.training.init_from import source_tokenizer
from src.training.trainer import Trainer
from tests.models.bert_folder import save_bert_folder
from tests.training.test_init_from import tiny_task


def reference_loss(z, v, y, temperature, alpha):
    """Hinton et al. (2015), Sec. 2, written out: softmax at T, KL(teacher || student) times T^2, mixed with
    the cross-entropy of the labels at T = 1; means over the batch."""
    p_teacher = torch.exp(v / temperature) / torch.exp(v / temperature).sum(-1, keepdim=True)
    p_student = torch.exp(z / temperature) / torch.exp(z / temperature).sum(-1, keepdim=True)
    kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(-1).mean()
    probabilities = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
    ce = -probabilities[torch.arange(len(y)), y].log().mean()
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.3), (10.0, 0.9), (2.0, 0.0), (3.0, 1.0)])
def test_the_loss_is_the_formula_with_the_t_squared_factor_and_the_alpha_mix(temperature, alpha):
    torch.manual_seed(0)
    z, v, y = torch.randn(6, 3, dtype=torch.float64), 3 * torch.randn(6, 3, dtype=torch.float64), \
        torch.randint(0, 3, (6,))
    loss, soft, hard = distillation_loss(z, v, y, temperature, alpha)
    expected = reference_loss(z, v, y, temperature, alpha)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(alpha * soft.item() + (1 - alpha) * hard.item(), rel=1e-6)


def student_gradient(z, v, y, temperature, alpha):
    z = z.clone().requires_grad_(True)
    distillation_loss(z, v, y, temperature, alpha)[0].backward()
    return z.grad


def test_at_high_temperature_the_soft_gradient_matches_logits():
    """Sec. 2.1: with zero-mean logits, dL_soft/dz_k -> (z_k - v_k) / K as T grows (the T^2 factor cancels
    the 1/T^2), so the gradient neither vanishes nor depends on T."""
    torch.manual_seed(1)
    b, k = 5, 4
    z, v = torch.randn(b, k, dtype=torch.float64), torch.randn(b, k, dtype=torch.float64)
    z, v = z - z.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
    y = torch.randint(0, k, (b,))
    expected = (z - v) / k / b  # the batch mean

    def error(temperature: float) -> float:  # the largest deviation, relative to the gradient's scale
        deviation = student_gradient(z, v, y, temperature, 1.0) - expected
        return (deviation.abs().max() / expected.abs().max()).item()

    assert error(100.0) < 2e-2 and error(1000.0) < 2e-3  # shrinks as 1/T
    assert error(1.0) > 0.2  # the limit holds at high T only


def test_with_alpha_zero_the_gradient_is_the_labels_alone():
    torch.manual_seed(2)
    z, y = torch.randn(4, 3), torch.randint(0, 3, (4,))
    plain = z.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(plain, y).backward()
    for teacher in (torch.randn(4, 3), 10 * torch.randn(4, 3)):
        assert torch.allclose(student_gradient(z, teacher, y, 3.0, 0.0), plain.grad)
    # and with alpha > 0 the teacher moves the student
    assert not torch.allclose(student_gradient(z, torch.randn(4, 3), y, 3.0, 0.5), plain.grad)


def test_half_the_teacher_is_one_layer_out_of_two():
    assert teacher_layers(6, 3) == [0, 2, 4]
    assert teacher_layers(4, 2) == [0, 2] and teacher_layers(2, 1) == [0]
    with pytest.raises(InitSourceError, match="a student of 5 layers cannot take the weights of a teacher"):
        teacher_layers(4, 5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 4-layer BertForSequenceClassification folder: a trained classifier's shape, with its tokenizer."""
    return save_bert_folder(tmp_path_factory.mktemp("teacher"), layers=4, width=32, positions=64, seed=3)


def student_config(teacher, run_dir, *overrides):
    """config/imdb_distil_tiny.yaml distilled from ``teacher``, resolved as ``train`` resolves it."""
    cfg = load_config("config/imdb_distil_tiny.yaml", [
        "model.dropout=0.0", f"training.distill_from={teacher}", "training.max_steps=2",
        "training.log_every=1", "tokenizer.max_tokens_per_sentence=64", f"output_dir={run_dir.parent}",
        f"run_name={run_dir.name}",
        *overrides])
    return resolve_distill_from(cfg)


def test_the_student_is_half_the_teacher_and_starts_from_its_layers_0_and_2(teacher, tmp_path):
    from src.models.hf_weights import bert_state_dict, read_hf_weights

    cfg = student_config(teacher, tmp_path / "run")
    assert (cfg.model.n_encoder_layers, cfg.model.d_model, cfg.model.pooling) == (2, 32, "cls")
    assert cfg.training.distill_from == str(teacher)
    trainer = Trainer(cfg, tiny_task(source_tokenizer(str(teacher))), tmp_path / "run",
                      NullTracker(output_dir=tmp_path))
    ours, expected = trainer.model.state_dict(), bert_state_dict(read_hf_weights(teacher))[0]
    for name, tensor in ours.items():
        # student layer i <- teacher layer 2i; embeddings.tgt is embeddings.src (one tied table)
        source = name.replace("encoder.layers.1.", "encoder.layers.2.")
        source = source.replace("embeddings.tgt", "embeddings.src")
        assert torch.equal(tensor, expected[source]), name
    assert torch.equal(ours["head.out.weight"], expected["head.out.weight"])  # the head copied too
    assert any(name.startswith("encoder.layers.1.") for name in ours)


def test_a_student_deeper_than_its_teacher_is_refused_in_one_line(teacher, tmp_path):
    with pytest.raises(InitSourceError) as err:
        student_config(teacher, tmp_path / "run", "model.n_encoder_layers=5")
    assert str(err.value) == (f"training.distill_from={teacher}: a student of model.n_encoder_layers=5 "
                              "cannot take the weights of a teacher of 4 layers (expected 1 to 4; by default "
                              "2, half)")


def test_a_teacher_without_a_trained_head_is_refused_before_any_step(tmp_path):
    bare = save_bert_folder(tmp_path / "mlm", layers=2, width=32, positions=64, mlm=True)
    with pytest.raises(InitSourceError, match=r"has no classifier: a teacher is a trained classifier"):
        student_config(bare, tmp_path / "run")


def test_cached_teacher_logits_equal_the_on_the_fly_ones_and_the_loss_parts_are_logged(teacher, tmp_path):
    task = tiny_task(source_tokenizer(str(teacher)))
    cached = Trainer(student_config(teacher, tmp_path / "a", "training.distill_cache=true"), task,
                     tmp_path / "a", NullTracker(output_dir=tmp_path)).task
    assert cached.cached.shape == (len(task.train), 2)
    for indices in ([0, 1, 2], [5, 3], [7]):  # batches of other widths than the cache's pass
        batch = cached.batch(indices, torch.device("cpu"))
        assert torch.allclose(cached.teacher_logits(batch[:-1]), cached.cached[batch[-1]], atol=1e-5)
    trainer = Trainer(student_config(teacher, tmp_path / "b"), task, tmp_path / "b",
                      NullTracker(output_dir=tmp_path))
    assert trainer.task.cached is None  # on the fly by default
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "b" / "train_history.jsonl").read_text().splitlines()]
    parts = [row for row in rows if "distill_soft" in row]
    assert [row["step"] for row in parts] == [1, 2]
    # KL is non-negative; at step 1 the student (the teacher's layer 0, its head) is within ~1e-7 of it, and
    # float32 rounding can put that just below 0 (seen once in a full run)
    assert all(row["distill_soft"] > -1e-6 and row["distill_hard"] > 0 for row in parts)
    # one micro-batch per step: the logged loss is the mix of that step's parts
    alpha = trainer.tc.distill_alpha
    for row in parts:
        mixed = alpha * row["distill_soft"] + (1 - alpha) * row["distill_hard"]
        assert row["loss"] == pytest.approx(mixed, rel=1e-5)


def test_a_student_started_from_other_weights_too_is_refused(teacher, tmp_path):
    with pytest.raises(InitSourceError) as err:
        student_config(teacher, tmp_path / "run", f"model.init_from={teacher}")
    assert str(err.value) == (f"training.distill_from={teacher} starts the student from the teacher's "
                              f"layers; model.init_from={teacher} would start it from other weights (set one "
                              "of them)")
