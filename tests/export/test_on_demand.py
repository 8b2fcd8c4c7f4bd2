"""The loader's on-demand export (``--backend onnx`` on a checkpoint): atomic, race-safe, bounded in time.

The export subprocess is replaced by a fake that writes a manifest in a moment (the real export is
tested in test_export_translation.py and test_export_families.py), so the race and the failures are tested
fast.
"""

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from src.inference import loader
from src.inference.onnx_backend import MANIFEST, MANIFEST_FORMAT
from src.training.checkpoint import CheckpointError, atomic_torch_save


def checked_manifest(digest: str) -> dict:
    """The manifest of a complete export that passed the check against PyTorch, for the checkpoint of
    ``digest``."""
    return {"format": MANIFEST_FORMAT, "checked": {"cases": [], "max_abs_diff": 0.0},
            "checkpoint": {"sha256": digest}}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    atomic_torch_save({"step": 1, "model": {"w": torch.zeros(2)}}, path)
    return path


class FakeExport:
    """``subprocess.run`` of ``python -m src.main export CKPT --out DIR``: records each DIR, writes a slow
    export there."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds, self.outs, self.lock = seconds, [], threading.Lock()

    def __call__(self, command, **kwargs):
        out = Path(command[command.index("--out") + 1])
        with self.lock:
            self.outs.append(out)
        checkpoint = Path(command[command.index("export") + 1])
        for name in ("encoder.onnx", "decoder_step.onnx"):
            (out / name).write_bytes(b"graph of " + str(out).encode())
            time.sleep(self.seconds / 2)  # the other export writes meanwhile
        (out / MANIFEST).write_text(json.dumps(checked_manifest(loader.file_sha256(checkpoint))))
        assert kwargs["timeout"] == loader.EXPORT_TIMEOUT_S
        return subprocess.CompletedProcess(command, 0, "", "")


def test_two_servers_exporting_one_checkpoint_at_once_never_share_a_folder(checkpoint, monkeypatch):
    fake = FakeExport()
    monkeypatch.setattr(subprocess, "run", fake)
    folders = [None, None]

    def start(i: int) -> None:
        folders[i] = loader._fresh_export(checkpoint)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    final = loader.default_export_dir(checkpoint)
    assert folders == [final, final] and len(fake.outs) == 2
    assert final not in fake.outs and fake.outs[0] != fake.outs[1]  # each wrote a folder of its own
    graphs = {(final / name).read_bytes() for name in ("encoder.onnx", "decoder_step.onnx")}
    assert len(graphs) == 1  # both graphs from one export: the winner's folder, whole
    assert sorted(p.name for p in final.parent.iterdir()) == ["model.export", "model.pt"]  # no staging left
    assert loader._fresh_export(checkpoint) == final and len(fake.outs) == 2  # up to date: not exported again


def test_a_stale_export_is_replaced_whole(checkpoint, monkeypatch):
    final = loader.default_export_dir(checkpoint)
    final.mkdir()
    (final / MANIFEST).write_text(json.dumps({"checkpoint": {"sha256": "of another file"}}))
    (final / "leftover.onnx").write_bytes(b"old")
    monkeypatch.setattr(subprocess, "run", FakeExport(seconds=0.0))
    assert loader._fresh_export(checkpoint) == final
    assert sorted(p.name for p in final.iterdir()) == sorted([MANIFEST, "decoder_step.onnx", "encoder.onnx"])
    assert sorted(p.name for p in final.parent.iterdir()) == ["model.export", "model.pt"]


def test_an_export_that_hangs_is_stopped_with_a_clear_message(checkpoint, monkeypatch):
    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hangs)
    with pytest.raises(CheckpointError, match=r"did not finish within 7 s and was stopped.*--backend torch"):
        loader._fresh_export(checkpoint, timeout_s=7)
    assert [p.name for p in checkpoint.parent.iterdir()] == ["model.pt"]  # the partial folder is removed


def test_a_failed_export_reports_the_last_lines_of_its_error_as_text(checkpoint, monkeypatch):
    stderr = "Traceback (most recent call last):\n  File x\nExportError: graph encoder does not export\n"
    monkeypatch.setattr(subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", stderr))
    with pytest.raises(CheckpointError) as err:
        loader._fresh_export(checkpoint)
    message = str(err.value)
    assert message.endswith("failed (exit code 1):\nTraceback (most recent call last):\n  File x\n"
                            "ExportError: graph encoder does not export")
    assert "['" not in message
    assert [p.name for p in checkpoint.parent.iterdir()] == ["model.pt"]
