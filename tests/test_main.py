"""The command line itself: instant help without torch, and usage errors before any server is asked."""

import subprocess
import sys
import time
from pathlib import Path

from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "translate", "evaluate", "runs", "bench", "data", "import-offline", "queues")


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys, contextlib, io; from src.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print('torch' in sys.modules, 'clearml' in sys.modules); print(out.getvalue())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    flags, _, text = proc.stdout.partition("\n")
    assert flags == "False False", proc.stdout + proc.stderr
    assert all(name in text for name in COMMANDS)


def test_help_takes_under_a_second():
    best = min(_timed([sys.executable, "-m", "src.main", "--help"]) for _ in range(3))
    assert best < 1.0, f"--help took {best:.2f} s"
    assert min(_timed([sys.executable, "-m", "src.main", "train", "--help"]) for _ in range(3)) < 1.0


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, capture_output=True, check=True, timeout=60)
    return time.perf_counter() - start


def test_an_unknown_queue_is_rejected_before_any_server_check(tmp_path):
    env = clean_env(tmp_path / "home", CLEARML_API_HOST="http://127.0.0.1:9", CLEARML_WEB_HOST="http://127.0.0.1:9",
                    CLEARML_FILES_HOST="http://127.0.0.1:9", CLEARML_API_ACCESS_KEY="k", CLEARML_API_SECRET_KEY="s")
    proc = run_src_main(["train", "--config", "config/tiny.yaml", "--queue", "nosuch"], env, timeout=60)
    assert proc.returncode == 2
    assert "unknown queue 'nosuch', expected one of ['cpu', 'gpu', 'services']" in proc.stderr
    assert "127.0.0.1:9" not in proc.stderr  # the server was never asked


def test_a_missing_run_is_one_line_naming_what_exists(tmp_path):
    proc = run_src_main(["translate", "nosuch", "Hallo.", "--runs-dir", str(tmp_path)], clean_env(tmp_path / "h"), 60)
    assert proc.returncode == 1
    assert "translate: no run 'nosuch'" in proc.stderr and "Traceback" not in proc.stderr
