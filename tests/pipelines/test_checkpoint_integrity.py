"""A damaged or foreign checkpoint is refused in one line naming the file, never loaded or "fixed"
by PyTorch's advice to drop weights_only (issue 26: 200 flipped bytes used to load without a word)."""

import os
import shutil

import pytest

from tests.clearml_stub.stub import run_src_main
from tests.training.damage import flip_tensor_bytes

pytestmark = pytest.mark.timeout(400)


def test_a_real_checkpoint_with_200_flipped_weight_bytes_is_refused_naming_it(tiny_runs, tmp_path):
    copy = tmp_path / "best.pt"
    shutil.copy(tiny_runs.run_dirs[0] / "train" / "checkpoints" / "best.pt", copy)
    flip_tensor_bytes(copy, count=200)
    proc = run_src_main(["translate", str(copy), "Ich habe keine Zeit."], tiny_runs.env, 120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"translate: checkpoint {copy} is damaged: the SHA-256 of its tensors" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_random_bytes_are_not_a_checkpoint_and_weights_only_false_is_never_suggested(tiny_runs, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(os.urandom(8192))
    proc = run_src_main(["translate", str(path), "Ich habe keine Zeit."], tiny_runs.env, 120)
    assert proc.returncode == 1
    assert f"translate: not a checkpoint (or damaged): {path}" in proc.stderr
    assert "weights_only" not in proc.stderr and "Traceback" not in proc.stderr
