"""Checkpoints survive crashes: atomic writes, weights_only loads, fallback past damaged files."""

import pytest
import torch

from src.training.checkpoint import CheckpointError, CheckpointManager, atomic_torch_save, load_checkpoint


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
    latest.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
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
