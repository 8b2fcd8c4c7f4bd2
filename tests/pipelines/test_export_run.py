"""Export parity on a real trained run: the tiny run's test sentences decode the same on ONNX Runtime
as on PyTorch."""

import shutil

import pytest

from src.export.exporter import export_checkpoint
from src.export.parity import parity

pytestmark = pytest.mark.timeout(300)


def test_the_tiny_runs_export_decodes_its_test_sentences_as_pytorch_does(tiny_runs, tmp_path):
    run_dir = tmp_path / tiny_runs.run_dirs[0].name  # a copy: the shared runs stay as trained
    shutil.copytree(tiny_runs.run_dirs[0], run_dir, symlinks=True)
    checkpoint = run_dir / "train" / "checkpoints" / "best.pt"
    folder = export_checkpoint(checkpoint)
    assert folder == run_dir / "export" and (folder / "encoder.onnx").is_file()
    result = parity(checkpoint, 100, beam=4, steps=5, atol=1e-4, batch_size=32)
    assert str(run_dir / "data_prep" / "dataset") in result["sentence_source"]  # the run's own test split
    n = result["sentences"]
    assert n >= 5 and result["greedy"] == result["beam4"] == n, result
    assert result["max_abs_logit_diff"] <= 1e-4 and result["ok"]
