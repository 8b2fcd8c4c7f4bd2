"""The report's tests read the session's shared tiny run (``tiny_runs``, tests/conftest.py).

The run goes through the command line, as a user starts it, so the report it leaves is the one the
pipeline's end writes, and its summary is the one a user reads.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env, run_folder


def report_line(stdout: str) -> Path:
    """The ``report:`` line of a train summary."""
    match = re.search(r"^report:\s+(\S+)$", stdout, re.MULTILINE)
    assert match, f"no 'report:' line in:\n{stdout[-2000:]}"
    return Path(match.group(1))


def train(tmp_path_factory: pytest.TempPathFactory, config: str, name: str) -> SimpleNamespace:
    root = tmp_path_factory.mktemp(name)
    env = clean_env(root / "home")
    runs_dir = root / "runs"
    proc = run_src_main(["train", "--config", config, f"output_dir={runs_dir}"], env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return SimpleNamespace(proc=proc, env=env, runs_dir=runs_dir, run_dir=run_folder(proc.stdout))


@pytest.fixture(scope="session")
def report_run(tiny_runs) -> SimpleNamespace:
    """The first shared tiny translation run (``tiny_runs``) and the report its summary names.
    Tests must not change the run folder."""
    run = SimpleNamespace(proc=tiny_runs.procs[0], env=tiny_runs.env, runs_dir=tiny_runs.runs_dir,
                          run_dir=tiny_runs.run_dirs[0])
    run.report = report_line(run.proc.stdout)
    run.html = run.report.read_text(encoding="utf-8") if run.report.is_file() else ""
    return run
