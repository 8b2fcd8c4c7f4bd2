"""The report's readers of a run folder: checkpoints go through the trainer's validating loader."""

import torch

from src.report.sources import read_grad_norms
from src.training.checkpoint import atomic_torch_save


def _checkpoint(step: int, norms: list[float]) -> dict:
    return {"step": step, "model": {"w": torch.zeros(2)}, "grad_steps": [5, 10][:len(norms)],
            "grad_history": {"embeddings": norms, "generator": [2 * v for v in norms]}}


def test_grad_norms_come_from_the_newest_readable_checkpoint(tmp_path):
    """A torn newest file and a file that is no training checkpoint are skipped, with the one before read."""
    atomic_torch_save(_checkpoint(5, [0.5]), tmp_path / "step_00000005.pt")
    atomic_torch_save(_checkpoint(10, [0.5, 0.25]), tmp_path / "step_00000010.pt")
    atomic_torch_save({"grad_history": {"x": [9.0]}, "grad_steps": [15]}, tmp_path / "step_00000015.pt")
    (tmp_path / "step_00000020.pt").write_bytes(b"PK\x03\x04 torn")
    grad = read_grad_norms(tmp_path)
    assert grad.groups == ("embeddings", "generator") and grad.steps == (5, 10)
    assert grad.norms == ((0.5, 0.25), (1.0, 0.5))


def test_no_readable_checkpoint_gives_no_grad_norms(tmp_path):
    (tmp_path / "step_00000005.pt").write_bytes(b"not a zip")
    assert read_grad_norms(tmp_path) is None
