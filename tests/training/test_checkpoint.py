"""Checkpoints survive crashes: atomic writes, weights_only loads, a digest of the tensors, fallback
past damaged files."""

import os

import pytest
import torch
from loguru import logger

from src.training.checkpoint import (
    TENSOR_DIGEST,
    CheckpointError,
    CheckpointManager,
    atomic_torch_save,
    load_checkpoint,
    tensor_digest,
)
from tests.training.damage import flip_tensor_bytes


def _state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((4,), float(step))}, "rng": torch.get_rng_state()}


def test_round_trip_with_weights_only(tmp_path):
    manager = CheckpointManager(tmp_path)
    path = manager.save(_state(3))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.full((4,), 3.0))


def test_keeps_only_the_newest(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (10, 20, 30):
        manager.save(_state(step))
    assert [p.name for p in manager.step_files()] == ["step_00000020.pt", "step_00000030.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_latest_falls_back_to_previous_good(tmp_path, damage, caplog):
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save(_state(1))
    latest = manager.save(_state(2))
    data = latest.read_bytes()
    latest.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(or damaged\)"):
        load_checkpoint(latest)
    state = manager.load_latest()
    assert state is not None and state["step"] == 1


def test_non_checkpoint_pickle_is_rejected(tmp_path):
    path = tmp_path / "step_00000001.pt"
    torch.save({"hello": 1}, path)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(path)


class _Payload:
    """Stands for any pickled class: loading it would run code from the file."""


def test_arbitrary_objects_are_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "model": {}, "obj": _Payload()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_crash_during_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "step_00000001.pt"
    atomic_torch_save(_state(1), path)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save(_state(2), path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001.pt"]  # no temp file left behind


def test_flipped_bytes_inside_a_tensor_are_refused_naming_the_file_and_the_previous_one_is_used(tmp_path):
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save({"step": 1, "model": {"w": torch.randn(256)}})
    latest = manager.save({"step": 2, "model": {"w": torch.randn(256)}})
    flip_tensor_bytes(latest)
    assert torch.load(latest, weights_only=True)["step"] == 2  # PyTorch alone loads it without a word
    with pytest.raises(CheckpointError, match=f"checkpoint {latest} is damaged: the SHA-256 of its tensors"):
        load_checkpoint(latest)
    assert manager.load_latest()["step"] == 1


def test_random_bytes_are_not_a_checkpoint_and_never_get_the_advice_to_drop_weights_only(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"not a checkpoint (or damaged): {path}")
    assert "weights_only" not in str(caught.value)


def test_a_checkpoint_from_before_digests_loads_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    atomic_torch_save(_state(5), path)  # written as checkpoints were before they carried a digest
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        assert load_checkpoint(path)["step"] == 5
    finally:
        logger.remove(sink)
    assert any(f"{path} carries no digest of its tensors" in w for w in warnings), warnings


def test_the_digest_covers_names_dtypes_shapes_and_bytes_but_not_dict_order():
    w, b = torch.arange(6, dtype=torch.float32), torch.zeros(2)
    reference = tensor_digest({"model": {"w": w, "b": b}, "step": 1})
    assert tensor_digest({"step": 1, "model": {"b": b.clone(), "w": w.clone()}}) == reference
    for changed in ({"w2": w, "b": b}, {"w": w.double(), "b": b}, {"w": w.reshape(2, 3), "b": b},
                    {"w": w + 1e-6 * (torch.arange(6) == 3), "b": b}):
        assert tensor_digest({"model": changed, "step": 1}) != reference, changed
    optimizer_state = {"state": {0: {"exp_avg": b}}}  # int keys, as an optimizer's state has them
    assert tensor_digest(optimizer_state) != tensor_digest({"state": {"0": {"exp_avg": b}}})


def test_saved_checkpoints_carry_the_digest_of_their_tensors(tmp_path):
    state = _state(7)
    path = CheckpointManager(tmp_path).save_best(state)
    assert torch.load(path, weights_only=True)[TENSOR_DIGEST] == tensor_digest(state)
