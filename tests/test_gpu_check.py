"""``.ci/gpu-check``: its dry run on the CPU exercises every stage's command line and output parsing,
so that the check is ready the day a GPU is lent; a stage that hangs is stopped and the rest go on."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clearml_stub.stub import kill_process_group
from tests.pipelines.conftest import clean_env, missing_data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "gpu-check"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / ".ci" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def gpu_marked_tests() -> int:
    """The gpu-marked tests, counted from the source (one ``pytest.mark.gpu`` decorator each)."""
    return sum(line.strip().startswith("@pytest.mark.gpu")
               for p in (REPO / "tests").rglob("test_*.py") for line in p.read_text().splitlines())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    if not Path("/usr/share/trans/de-en").exists():
        missing_data("the Ding corpus (Debian's trans-de-en) is not installed; config/gpu.yaml trains on it")
    tmp = tmp_path_factory.mktemp("gpu_check")
    # not a pytest worker
    env = {k: v for k, v in clean_env(tmp / "home").items() if not k.startswith("PYTEST_")}
    env["PYTHON"] = sys.executable
    out = tmp / "result" / "gpu-check.json"
    proc = subprocess.Popen([str(SCRIPT), "--dry-run", "--out", str(out), "--work-dir", str(tmp / "work")],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=280)
    finally:
        kill_process_group(proc)
    assert proc.returncode == 0, (f"{stdout[-2000:]}\n{stderr[-5000:]}\n"
                                  f"{out.read_text() if out.exists() else ''}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), json.loads(
        out.read_text())


def test_the_dry_run_passes_every_stage_and_fills_the_fields_the_gpu_run_reports(dry_run):
    proc, report = dry_run
    stages = report["stages"]
    assert report["dry_run"] is True and report["all_ok"] is True
    assert list(stages) == list(gpu_check.STAGES), list(stages)
    assert {name: s["status"] for name, s in stages.items()} == dict.fromkeys(gpu_check.STAGES, "ok")
    assert proc.stdout.strip().splitlines()[-1].endswith("gpu-check.json")

    env = report["environment"]
    assert (env["torch"] and len(env["commit"]) == 40 and "nvidia_smi" in env
            and env["cuda_available"] is False)
    assert "packages_off_pin" in env

    tests = stages["gpu_tests"]["result"]
    assert tests["selected"] == gpu_marked_tests() >= 5  # -m gpu reached every marked test
    assert tests["failed"] == tests["errors"] == 0 and tests["passed"] + tests["skipped"] == tests["selected"]

    bench = stages["bench"]["result"]
    assert bench["settings"]["device"] == "cpu" and bench["settings"]["d_model"] == 16
    assert min(*bench["training_tokens_per_s"].values(), *bench["decoding_tokens_per_s"].values()) > 0
    assert (min(bench["mfu"].values()) > 0 and bench["peak_tflops"] == 1.0
            and bench["max_abs_logit_diff"] < 1e-4)

    train = stages["train"]["result"]
    assert train["steps"] == 2 and train["test_sentences"] == 8 and train["train_tokens_per_s_median"] > 0
    assert set(train["bleu"]) == {"beam", "greedy"} and all(b >= 0 for b in train["bleu"].values())
    assert set(train["step_status"].values()) == {"completed"}

    export = stages["export"]["result"]
    assert export["graphs"] and export["checked_cases"] >= 1 and export["checked_max_abs_diff"] < 1e-4

    parity = stages["parity"]["result"]
    assert (parity["parity"] is True
            and parity["greedy_identical"] == parity["beam_identical"] == parity["sentences"] == 4)

    serving = stages["serving"]["result"]
    assert serving["device"] == "cpu" and serving["task"] == "translate"
    assert {(r["mode"], r["concurrency"]) for r in serving["rows"]} == {
        (mode, c) for mode in ("batching on", "batching off") for c in (1, 2)}
    assert all(
        r["errors"] == 0 and r["sentences_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in serving["rows"])
    assert sorted(k for k in serving if k.startswith("speedup")) == [
        "speedup_batching_c2_over_sequential", "speedup_batching_on_over_off_c2"]


def option_names(command: list[str]) -> set[str]:
    """The options of a command line: ``--name`` flags and ``section.key=`` overrides."""
    return {
        part.split("=")[0] for part in command if part.startswith("--") or (
            "=" in part and "." in part.split("=")[0])}


def test_the_gpu_run_uses_no_option_the_dry_run_leaves_out(tmp_path):
    """The dry run differs in sizes only: every option of the real command lines is exercised by it."""
    for name in gpu_check.STAGES:
        commands = {}
        for dry in (False, True):
            ctx = {"dry_run": dry, "work": tmp_path, "limits": gpu_check.LIMITS_S,
                   "run": str(tmp_path / "run")}
            commands[dry] = gpu_check.STAGES[name](ctx)[0]
        missing = option_names(commands[False]) - option_names(commands[True])
        assert not missing, f"{name}: the GPU run's {sorted(missing)} are not in the dry run {commands[True]}"
        assert commands[False][:4] == commands[True][:4], name  # the same program and subcommand
    real = gpu_check.STAGES["bench"]({"dry_run": False, "work": tmp_path, "limits": gpu_check.LIMITS_S})[0]
    assert real[real.index("--device") + 1] == "cuda" and real[real.index("--d-model") + 1] == "512"
    assert sum(gpu_check.LIMITS_S.values()) <= gpu_check.BUDGET_S <= 8 * 60


def test_a_hung_stage_is_stopped_at_its_limit_and_the_next_stage_still_runs(tmp_path, monkeypatch):
    pid_file = tmp_path / "grandchild.pid"
    hang = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '120']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    monkeypatch.setattr(gpu_check, "LIMITS_S", {**gpu_check.LIMITS_S, "environment": 2, "bench": 30})
    monkeypatch.setitem(gpu_check.STAGES, "environment", lambda ctx: ([sys.executable, "-c", hang], None))
    monkeypatch.setitem(gpu_check.STAGES, "bench", lambda ctx: (
        [sys.executable, "-c", "print('{\"x\": 1}')"], lambda code, out: (
            "ok", gpu_check.json_of(out, "bench"))))
    out = tmp_path / "result.json"
    start = time.monotonic()
    status = gpu_check.main(["--stages", "environment", "bench", "--out", str(out), "--work-dir",
                             str(tmp_path)])
    report = json.loads(out.read_text())
    assert status == 1 and report["all_ok"] is False and time.monotonic() - start < 30
    assert (report["stages"]["environment"]["status"] == "timeout"
            and "limit of 2 s" in report["stages"]["environment"]["error"])
    assert report["stages"]["bench"] == report["stages"]["bench"] | {"status": "ok", "result": {"x": 1}}
    assert not alive(int(pid_file.read_text()))  # the stage's whole process group went, its children too


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs a few seconds on (a zombie waiting for its reaper counts as gone)."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z":
            return False
        time.sleep(0.1)
    return True


def test_a_stage_whose_input_stage_failed_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.STAGES, "train", lambda ctx: (
        [sys.executable, "-c", "print('no run folder here')"], gpu_check.train(ctx)[1]))
    out = tmp_path / "result.json"
    gpu_check.main(["--stages", "train", "export", "parity", "--out", str(out), "--work-dir", str(tmp_path)])
    stages = json.loads(out.read_text())["stages"]
    assert stages["train"]["status"] == "error" and "run folder:" in stages["train"]["error"]
    assert stages["export"] == {"status": "skipped", "error": "needs the train stage, which ended error"}
    assert stages["parity"] == {"status": "skipped", "error": "needs the export stage, which ended skipped"}


def test_a_failing_gpu_test_fails_its_stage_with_the_test_named(tmp_path, monkeypatch):
    junit = ('<testsuites><testsuite tests="2" failures="1" errors="0" skipped="0">'
             '<testcase classname="tests.test_x" name="test_ok"/>'
             '<testcase classname="tests.test_x" name="test_bf16">'
             '<failure message="assert 0.3 &lt; 0.01"/></testcase></testsuite></testsuites>')
    write = f"import pathlib, sys; pathlib.Path(sys.argv[1]).write_text({junit!r}); sys.exit(1)"
    monkeypatch.setitem(gpu_check.STAGES, "gpu_tests", lambda ctx: (
        [sys.executable, "-c", write, str(ctx["work"] / "gpu-tests.xml")], gpu_check.gpu_tests(ctx)[1]))
    out = tmp_path / "result.json"
    assert gpu_check.main(["--stages", "gpu_tests", "--out", str(out), "--work-dir", str(tmp_path)]) == 1
    stage = json.loads(out.read_text())["stages"]["gpu_tests"]
    assert stage["status"] == "failed" and "tests.test_x::test_bf16" in stage["error"]
    assert {k: stage["result"][k] for k in ("selected", "passed", "failed")} == {"selected": 2, "passed": 1,
                                                                                 "failed": 1}
    assert stage["result"]["outcomes"]["tests.test_x::test_bf16"] == "failed: assert 0.3 < 0.01"


def test_the_environment_names_the_packages_that_differ_from_their_pins(monkeypatch):
    from importlib import metadata

    pins = dict(line.split("#")[0].strip().split("==")
                for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line.split("#")[0])
    installed = {**pins, "torch": "2.11.0+cu130", "onnxruntime": pins["onnxruntime"] + "+cu", "loguru": None}

    def version(name: str) -> str:
        if installed[name] is None:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(metadata, "version", version)
    assert gpu_check._packages_off_pin() == {"torch": "2.11.0+cu130", "loguru": None}
