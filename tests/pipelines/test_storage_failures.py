"""Filesystem failures as the user meets them: one line naming the path, exit 1, no traceback, and
found before the work where they can be (issue 26: a read-only output_dir was a traceback, evaluate
scored everything before failing to write, a full disk was "enforce fail at inline_container.cc")."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.clearml_stub.stub import REPO_ROOT, run_src_main
from tests.pipelines.conftest import clean_env

pytestmark = pytest.mark.timeout(400)

# python -m src.main with a disk that fills once the resumed run saves past step 30 (tests/training/damage.py)
DISK_FILLS_AFTER_STEP_30 = """
import runpy, sys, torch
from tests.training.damage import FullDiskFile
real_save = torch.save
def save(obj, f, *args, **kwargs):
    full = isinstance(obj, dict) and obj.get("step", 0) > 30
    return real_save(obj, FullDiskFile(f, room=4096) if full else f, *args, **kwargs)
torch.save = save
sys.argv = ["src.main", *sys.argv[1:]]
runpy.run_module("src.main", run_name="__main__")
"""


def test_train_into_an_output_dir_that_cannot_be_a_folder_fails_at_once_in_one_line(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the runs would go")
    proc = run_src_main(["train", "--config", "config/tiny.yaml", f"output_dir={blocker / 'runs'}"],
                        clean_env(tmp_path / "home"), timeout=120)
    assert proc.returncode == 1
    assert f"train: output_dir {blocker / 'runs'} cannot be a folder: {blocker} is a file" in proc.stderr
    assert "Traceback" not in proc.stderr and "data_prep" not in proc.stderr  # refused before the first step


def test_evaluate_checks_where_it_writes_before_scoring(tiny_runs, tmp_path):
    blocker = tmp_path / "metrics"
    blocker.write_text("a file")
    out = blocker / "valid.json"
    proc = run_src_main(["evaluate", str(tiny_runs.run_dirs[0]), "--split", "valid", "--output", str(out)],
                        tiny_runs.env, timeout=120)
    assert proc.returncode == 2  # a usage error, found while parsing the options
    assert f"argument --output: cannot write {out}: {blocker} is a file, not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr and "BLEU" not in proc.stdout + proc.stderr  # nothing was scored


def test_a_disk_filling_during_training_is_one_line_saying_disk_full_and_naming_the_checkpoint(tiny_runs,
                                                                                               tmp_path):
    run_dir = tmp_path / "runs" / tiny_runs.run_dirs[0].name
    shutil.copytree(tiny_runs.run_dirs[0], run_dir, symlinks=True)
    proc = subprocess.run([sys.executable, "-c", DISK_FILLS_AFTER_STEP_30, "train", "--resume", str(run_dir),
                           "training.max_steps=32", f"output_dir={run_dir.parent}"],
                          cwd=REPO_ROOT, env=tiny_runs.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    checkpoint = re.escape(str(run_dir / "train" / "checkpoints"))
    assert re.search(r"step train failed: disk full: cannot write checkpoint "
                     rf"{checkpoint}/(step_00000032|best)\.pt "
                     r"\(.+ free on its filesystem\) \(traceback: \S+traceback.txt\)",
                     proc.stderr), proc.stderr[-3000:]
    assert "inline_container" not in proc.stderr and "Traceback" not in proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["failed_step"] == "train"
            and "disk full" in (run_dir / "train" / "traceback.txt").read_text())
