"""An offline sweep, imported: its trials become children of the sweep's parent task on the server."""

import subprocess
import sys

import pytest

from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import REPO_ROOT, ClearMLStub
from tests.pipelines.conftest import clean_env

clearml_stub = stub_fixtures.clearml_stub

# The tasks a local sweep writes, in its order: the trials, then the parent (one running task per process).
# A second study's trial in the same folder must not be filed under this study's parent.
SWEEP = """
import json, sys
from pathlib import Path
from src.config.tracking import TrackingConfig
from src.orchestration import start_sweep_tracker

out = Path(sys.argv[1])
cfg = TrackingConfig(offline=True)
ids = {}
for study, name, task_type in (("s", "s-trial-000", "training"), ("s", "s-trial-001", "training"),
                               ("other", "other-trial-000", "training"), ("s", "s", "optimizer")):
    tracker = start_sweep_tracker(cfg, study=study, task_name=name, task_type=task_type,
                                  output_dir=out / name)
    tracker.log_scalar("valid", "loss", 1.0, 1)
    tracker.close()
    ids[name] = tracker.task_id
print(json.dumps(ids))
"""


@pytest.mark.timeout(180)
def test_imported_offline_trials_are_children_of_the_sweep_task(clearml_stub: ClearMLStub, tmp_path):
    """About 15 s: four offline tasks, then their import."""
    sweep_dir = tmp_path / "sweep"
    made = subprocess.run([sys.executable, "-c", SWEEP, str(sweep_dir)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env=clean_env(tmp_path / "home", PYTHONPATH=str(REPO_ROOT)))
    assert made.returncode == 0, made.stderr[-3000:]
    code = f"from src.tracking import import_offline\nprint('IDS', *import_offline({str(sweep_dir)!r}))"
    result = clearml_stub.run_python(code, timeout=120)
    assert result.returncode == 0, result.output
    imported = next(line for line in result.stdout.splitlines() if line.startswith("IDS ")).split()[1:]
    assert len(imported) == 4

    tasks = {t["name"]: t for t in clearml_stub.tasks}
    parent = tasks["s"]
    assert parent["type"] == "optimizer" and parent["parent"] is None
    assert tasks["s-trial-000"]["parent"] == tasks["s-trial-001"]["parent"] == parent["id"]
    assert tasks["other-trial-000"]["parent"] is None  # another study, whose parent was not imported
    assert clearml_stub.unknown_calls == []
