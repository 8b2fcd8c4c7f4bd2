"""Issue 16: no host sync inside a training step; ranks agree on stopping only every ``log_every`` steps.

On the meta device a tensor has a shape and no data: any read back to the host (``.item()``,
``int(t)``, ``.tolist()``) raises. A step that runs there reads nothing from the device, the CPU
stand-in for a GPU's ``torch.cuda.set_sync_debug_mode("error")`` (the ``gpu`` test below).
"""

import pytest
import torch

from src.training import distributed
from src.training.loss import translation_loss
from tests.training.test_distributed import cuda_devices
from tests.training.test_trainer import corpus_dir, make_trainer  # noqa: F401 (corpus_dir: a fixture)


def test_the_translation_loss_count_stays_a_device_tensor():
    labels = torch.tensor([[5, 6, 0], [7, 0, 0]])
    _, n = translation_loss(torch.randn(2, 3, 9), labels, pad_id=0)
    assert isinstance(n, torch.Tensor) and n.dtype == torch.int64 and int(n) == 3
    loss_meta, n_meta = translation_loss(torch.randn(2, 3, 9, device="meta"), labels.to("meta"), pad_id=0)
    assert n_meta.device.type == "meta" and loss_meta.shape == ()


def test_a_training_step_reads_nothing_back_from_the_device(corpus_dir, tmp_path):  # noqa: F811
    """Two micro-batches on the meta device: targets and tokens are counted on the host batches."""
    trainer = make_trainer(corpus_dir, tmp_path / "run", grad_accum_steps=2)
    host = make_trainer(corpus_dir, tmp_path / "host", grad_accum_steps=2)
    trainer.model.to("meta")
    trainer.device = torch.device("meta")
    loss_sum, n_global, tokens = trainer.train_step(trainer.sampler.stream())
    assert loss_sum.device.type == n_global.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in trainer.model.parameters())
    # the same counts as a CPU step over the same two micro-batches
    cpu_loss, cpu_n, cpu_tokens = host.train_step(host.sampler.stream())
    assert tokens == cpu_tokens and cpu_n.item() > 0 and torch.isfinite(cpu_loss)


def test_ranks_compare_stop_flags_only_at_steps_divisible_by_log_every(corpus_dir, tmp_path, monkeypatch):  # noqa: F811
    """With two ranks the all-reduce (and its host read) runs at steps 0, 5, 10 only (log_every 5); alone,
    a stop request or a spent budget is seen at once, with no collective."""
    trainer = make_trainer(corpus_dir, tmp_path / "run", log_every=5)
    calls = []
    monkeypatch.setattr(distributed, "any_rank", lambda flags, device: calls.append(flags) or tuple(flags))
    assert trainer._should_stop(True, False) == (True, False) and not calls  # alone
    trainer.world = distributed.World(0, 2, 0)
    seen = {}
    for step in range(12):
        trainer.step = step
        seen[step] = trainer._should_stop(True, step == 10)
    assert len(calls) == 3 and [s for s, flags in seen.items() if any(flags)] == [0, 5, 10]
    assert seen[10] == (True, True) and seen[7] == (False, False)


@pytest.mark.gpu
@pytest.mark.skipif(cuda_devices() < 1, reason="needs a CUDA device")
def test_a_cuda_training_step_never_waits_for_the_gpu(corpus_dir, tmp_path):  # noqa: F811
    """Under ``set_sync_debug_mode("error")`` any synchronising call (``.item()``, a blocking copy) raises.
    The first step runs outside it (CUDA and cuBLAS start-up synchronise once)."""
    trainer = make_trainer(corpus_dir, tmp_path / "run", device="cuda", grad_accum_steps=2)
    batches = trainer.sampler.stream()
    trainer.train_step(batches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum, n_global, _ = trainer.train_step(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss_sum).item() and n_global.item() > 0
