"""``ClearMLStub``: starts the stand-in API and files servers and inspects what the SDK left on them."""

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from tests.clearml_stub.endpoints_other import ACCESS_KEY, SECRET_KEY
from tests.clearml_stub.endpoints_tasks import public_task
from tests.clearml_stub.httpd import ApiHandler, FilesHandler
from tests.clearml_stub.state import StubState

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_POLL_S = 1.0  # seconds between an idle agent's queue polls (a few small requests to the stand-in each)

# Short HTTP retries: should the stub die mid-test, the SDK gives up in seconds instead of minutes.
# Thread-based event reporting: the default reporting subprocess added ~10 s to every close() here
# and once hung an offline close() on a loaded machine; the events sent are the same.
_CONFIG = """\
api {{
  api_server: "{api}"
  web_server: "{web}"
  files_server: "{files}"
  credentials {{ access_key: "{key}", secret_key: "{secret}" }}
  http.retries {{ total: 2, connect: 2, read: 2, redirect: 2, status: 2 }}
  http.retries {{ backoff_factor: 0.1, backoff_max: 1 }}
}}
sdk.development.worker.ping_period_sec: 5
sdk.development.report_use_subprocess: false
agent {{
  worker_id: "stub-agent"
  venvs_dir: "{workdir}/venvs-builds"
  docker_pip_cache: "{workdir}/pip-cache"
  vcs_cache.enabled: false
  venvs_cache.path: ""
  package_manager.type: pip
  reload_config: false
}}
"""


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


class ClearMLStub:
    """A running stand-in: ``api_url``, ``files_url``, ``web_url``, ``env`` and read-only inspectors.

    Args:
        workdir: where the isolated HOME, ``clearml.conf``, scripts and agent folders go (a tmp_path).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.state = StubState()
        self._servers = [self._serve(ApiHandler), self._serve(FilesHandler)]
        api_port, files_port = (s.server_address[1] for s in self._servers)
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.files_url = f"http://127.0.0.1:{files_port}"
        self.web_url = f"http://127.0.0.1:{api_port}"  # only used by the SDK to build links
        self.home = self.workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file = self.workdir / "clearml.conf"
        self.config_file.write_text(
            _CONFIG.format(
                api=self.api_url,
                web=self.web_url,
                files=self.files_url,
                key=ACCESS_KEY,
                secret=SECRET_KEY,
                workdir=self.workdir,
            )
        )
        self._scripts = 0

    def _serve(self, handler: type) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), type(handler.__name__, (handler,), {"state": self.state})
        )
        server.daemon_threads = True
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"clearml-stub-{handler.__name__}",
            daemon=True,
        ).start()
        return server

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> dict[str, str]:
        """Environment that points the SDK and the agent at this stub, with HOME and config isolated."""
        return {
            "CLEARML_API_HOST": self.api_url,
            "CLEARML_WEB_HOST": self.web_url,
            "CLEARML_FILES_HOST": self.files_url,
            "CLEARML_API_ACCESS_KEY": ACCESS_KEY,
            "CLEARML_API_SECRET_KEY": SECRET_KEY,
            "CLEARML_CONFIG_FILE": str(self.config_file),
            "HOME": str(self.home),
            "CLEARML_CACHE_DIR": str(self.workdir / "cache"),
        }

    def subprocess_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """``os.environ`` without any ClearML settings of this machine, plus ``env``, plus ``extra``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), base.get("PYTHONPATH", "")) if p)
        return {
            **base,
            "PYTHONPATH": pythonpath,
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
            **self.env,
            **(extra or {}),
        }

    def agent_env(self, name: str, from_checkout: bool) -> dict[str, str]:
        """Environment for one ``clearml-agent`` process: own HOME, config, worker id and work folders.

        The agent runs tasks in this interpreter, installing nothing (``CLEARML_AGENT_SKIP_*``), with
        this checkout on PYTHONPATH. ``from_checkout`` stands in for the git clone of a task whose
        entry point is a file of the repository (``CLEARML_AGENT_FORCE_CODE_DIR``); leave it off for
        standalone scripts kept in ``script.diff`` (function steps), which that variable would skip.
        """
        workdir = self.workdir / f"agent-{name}"
        (workdir / "home").mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        config = workdir / "clearml.conf"
        config.write_text(
            self.config_file.read_text()
            .replace(str(self.workdir), str(workdir))
            .replace('worker_id: "stub-agent"', f'worker_id: "stub-agent-{name}"')
        )
        return self.subprocess_env(
            {
                "HOME": str(workdir / "home"),
                # the agent's one-instance-per-worker-id check keeps pid files in the temp folder: one per
                # stand-in, so agents of other test runs on this machine (same worker ids) do not block it
                "TMPDIR": str(workdir / "tmp"),
                "CLEARML_CONFIG_FILE": str(config),
                "CLEARML_WORKER_ID": f"stub-agent-{name}",
                "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
                "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable,
                # an idle agent polls its queues every 5 s by default: a task enqueued meanwhile waited 2.5 s
                # on average, with the test's worker idle, before the agent took it
                "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC": str(AGENT_POLL_S),
                **({"CLEARML_AGENT_FORCE_CODE_DIR": str(REPO_ROOT)} if from_checkout else {}),
            }
        )

    def start_agent(
        self, name: str, queues: list[str], log_file: Path, from_checkout: bool
    ) -> subprocess.Popen:
        """``clearml-agent daemon --queue <queues> --foreground --cpu-only`` in its own process group.

        The caller must end it with ``kill_process_group`` (the daemon polls forever).
        """
        cmd = ["clearml-agent", "daemon", "--queue", *queues, "--foreground", "--cpu-only"]
        log = open(log_file, "w")  # noqa: SIM115 (the child keeps writing after we return)
        return subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=self.agent_env(name, from_checkout),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run_python(self, code: str, timeout: float, extra_env: dict[str, str] | None = None) -> ScriptResult:
        """Run ``code`` as a script file in a fresh interpreter; SIGKILL its process group after ``timeout``.

        A script file (not ``-c``) because the SDK records the running script as the task's entry point.
        """
        self._scripts += 1
        script = self.workdir / "scripts" / f"script_{self._scripts}.py"
        script.parent.mkdir(exist_ok=True)
        script.write_text(code)
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=script.parent,
            env=self.subprocess_env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # PYTHONFAULTHANDLER makes SIGABRT print every thread's stack: the report shows where it hung.
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            kill_process_group(proc)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"script timed out after {timeout} s; unknown endpoints: "
                f"{self.state.unknown_calls}\n{ScriptResult(-9, stdout, stderr).output}"
            ) from None
        kill_process_group(proc)  # SDK helpers (reporting subprocess, monitors) must not outlive the test
        return ScriptResult(proc.returncode, stdout, stderr)

    def add_queue(self, name: str) -> str:
        """Create a queue as an administrator would before agents start; returns its id."""
        with self.state.lock:
            return self.state.create_queue(name)["id"]

    # --- inspectors: deep copies taken under the lock, so tests never race the server threads ----

    def _snapshot(self, collection: str) -> list[dict]:
        with self.state.lock:
            return copy.deepcopy(list(getattr(self.state, collection).values()))

    @property
    def tasks(self) -> list[dict]:
        return [public_task(t) for t in self._snapshot("tasks")]

    @property
    def queues(self) -> list[dict]:
        return self._snapshot("queues")

    @property
    def models(self) -> list[dict]:
        return self._snapshot("models")

    @property
    def projects(self) -> list[dict]:
        return self._snapshot("projects")

    @property
    def events(self) -> list[dict]:
        with self.state.lock:
            return copy.deepcopy(self.state.events)

    @property
    def files(self) -> dict[str, bytes]:
        with self.state.lock:
            return dict(self.state.files)

    @property
    def unknown_calls(self) -> list[str]:
        with self.state.lock:
            return list(self.state.unknown_calls)

    def task_by_name(self, name: str) -> dict:
        found = [t for t in self.tasks if t["name"] == name]
        assert len(found) == 1, f"expected one task named {name!r}, found {[t['name'] for t in self.tasks]}"
        return found[0]

    def status_history(self, task_id: str) -> list[str]:
        with self.state.lock:
            return [status for status, _ in self.state.tasks[task_id]["status_history"]]

    def queue_entries(self, queue_name: str) -> list[str]:
        """Ids of the tasks waiting in the queue named ``queue_name``, oldest first."""
        queue = next((q for q in self.queues if q["name"] == queue_name), None)
        assert queue is not None, f"no queue {queue_name!r}; queues: {[q['name'] for q in self.queues]}"
        return [entry["task"] for entry in queue["entries"]]

    def queue_name(self, queue_id: str | None) -> str | None:
        return next((q["name"] for q in self.queues if q["id"] == queue_id), None)

    def hyperparams(self, task_id: str) -> dict[str, str]:
        """``{"Section/name": value}`` of a task, as the UI shows them."""
        task = next(t for t in self.tasks if t["id"] == task_id)
        return {
            f"{section}/{name}": item.get("value")
            for section, items in task["hyperparams"].items()
            for name, item in items.items()
        }

    def artifacts(self, task_id: str) -> dict[str, dict]:
        task = next(t for t in self.tasks if t["id"] == task_id)
        return {a["key"]: a for a in task["execution"].get("artifacts", [])}

    def scalars(self, task_id: str) -> list[tuple[str, str, int, float]]:
        """``(metric, variant, iteration, value)`` of every scalar event the task reported."""
        return [
            (e["metric"], e["variant"], e.get("iter"), e["value"])
            for e in self.events
            if e.get("task") == task_id and e.get("type") == "training_stats_scalar"
        ]

    def file_for_url(self, url: str) -> bytes | None:
        """Bytes stored on the files host for a URL the SDK recorded (artifact ``uri``, image ``url``)."""
        if not url.startswith(self.files_url):
            return None
        # the files host stores the decoded path; the SDK records it percent-encoded (a task name with spaces)
        return self.files.get(unquote(url[len(self.files_url) :]).strip("/"))

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate():
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL the whole group: the SDK once ignored SIGTERM while retrying, and agents spawn children."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def run_src_main(args: list[str], env: dict[str, str], timeout: float,
                 stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m src.main ARGS`` from the repository root; its whole process group is killed afterwards.

    On timeout the output so far goes into the assertion message; SDK helper processes never
    outlive the command. ``stdin``: text fed to the command's standard input (else none).
    """
    proc = subprocess.Popen([sys.executable, "-m", "src.main", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"src.main {args} timed out after {timeout} "
                             f"s\n{stdout[-3000:]}\n{stderr[-5000:]}") from None
    kill_process_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

