"""The GPU check: every CUDA path of the project in one go, one JSON of results (``.ci/gpu-check``).

    .ci/gpu-check [--out FILE] [--stages NAME ...] [--run RUN] [--budget SECONDS] [--work-dir DIR] [--dry-run]

Stages, in order, each in its own subprocess (its own process group) under its own time limit, so
that a slow or hung stage is stopped and recorded while the others still run:

    environment  torch, CUDA, GPU name, driver (nvidia-smi), commit
    gpu_tests    python -m pytest -m gpu on the test files that carry the mark, pass/fail counts
    bench        python -m src.main bench --device cuda at the paper's base size (bf16): tokens/s, MFU
    train        python -m src.main train --config config/gpu.yaml, its time budget capped to fit; BLEU
    export       python -m src.main export RUN (the trained run)
    parity       python -m src.export.parity RUN --json: tokens and logits, ONNX Runtime against PyTorch
    serving      python -m src.serving.bench RUN --json with the server on CUDA: latency and throughput

GPU time comes in slots of about 15 minutes, machine start included, so the limits below add up to
8 minutes (``--budget``); a stage never gets more than what is left of it. The JSON is rewritten
after every stage: a check killed from outside still leaves what it measured.

``--dry-run`` runs the same stages with the same command lines and options on the CPU at the
smallest sizes, and parses their outputs the same way; the default tests run it so that a renamed
option or output key fails there, not in the first minute of a GPU slot.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480.0  # 8 minutes on the GPU: a 15-minute slot less the machine's start and the transfers
TRAIN_OVERHEAD_S = 100.0  # the train stage's time outside the training loop: data, BPE, evaluation, report
# Each stage's limit in seconds on the GPU, adding up to BUDGET_S. Estimates until the first GPU run: its
# JSON gives every stage's seconds, to set them by.
LIMITS_S = {"environment": 20, "gpu_tests": 70, "bench": 60, "train": 190, "export": 60, "parity": 30, "serving": 50}
DRY_LIMIT_S = 240  # per stage on a busy 2-core CPU, where the budget is not the point
# Stages that read another's output: the run of train, the graphs of export. Without --run, each waits for
# the stage it reads and is skipped if that one did not end "ok".
NEEDS = {"export": "train", "parity": "export", "serving": "train"}
# With --jobs 2 (the dry run's default) the longest chain starts first: train, then export and parity
# beside serving, while the other worker takes the independent stages.
PARALLEL_ORDER = ("train", "environment", "gpu_tests", "bench", "serving", "export", "parity")

# What differs between the real run and the dry run: sizes only. Every option is on both command lines.
SIZES = {
    False: {
        "bench": ["--device", "cuda", "--d-model", "512", "--n-heads", "8", "--layers", "6", "--d-ff", "2048",
                  "--vocab-size", "8000", "--batch-size", "128", "--seq-len", "64", "--new-tokens", "64",
                  "--repeats", "5", "--steps", "5"],
        "train": ["training.device=cuda", "evaluation.max_test_sentences=300"],
        "parity": ["--sentences", "50", "--beam", "4", "--steps", "5"],
        "serving": ["--requests", "48", "--concurrency", "1", "16"],
        "serving_device": "cuda",
    },
    True: {
        "bench": ["--device", "cpu", "--d-model", "16", "--n-heads", "2", "--layers", "1", "--d-ff", "32",
                  "--vocab-size", "64", "--batch-size", "2", "--seq-len", "8", "--new-tokens", "4",
                  "--repeats", "1", "--steps", "1", "--peak-tflops", "1"],  # a peak, so that MFU is a number
        "train": ["training.device=cpu", "evaluation.max_test_sentences=8",
                  # the tiny model of config/tiny.yaml, two steps, on a 2k-pair slice of the corpus
                  "data.max_rows=2000", "data.ding_extra_train_phrases=false", "tokenizer.vocab_size=300",
                  "batching.max_tokens=512", "model.d_model=16", "model.n_heads=2", "model.n_encoder_layers=1",
                  "model.n_decoder_layers=1", "model.d_ff=32", "model.max_positions=160", "training.max_steps=2",
                  "training.warmup_steps=1", "training.log_every=1", "training.eval_every=2",
                  "training.checkpoint_every=2", "evaluation.beam_size=2", "evaluation.max_new_tokens=8",
                  "evaluation.n_samples=2", "tracking.heatmap_every=2", "tracking.grad_norm_every=1"],
        "parity": ["--sentences", "4", "--beam", "2", "--steps", "2"],
        "serving": ["--requests", "4", "--concurrency", "1", "2"],
        "serving_device": "cpu",
    },
}


class StageError(Exception):
    """A stage's command ran but its output is not what the check reads (a changed option or key)."""


def run_command(command: list[str], limit: float, log: Path) -> tuple[int, str]:
    """``command`` in its own process group from the repository root; (exit status, stdout).

    Raises ``subprocess.TimeoutExpired`` after ``limit`` seconds, once the group is stopped: SIGINT
    first, so that Python's ``finally`` blocks run (the serving bench stops its servers there), then
    SIGKILL for whatever is left. stderr goes to ``log``.
    """
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                text=True, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            out, _ = proc.communicate(timeout=limit)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.communicate(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise


def json_of(stdout: str, what: str) -> dict:
    """The JSON object a ``--json`` command printed (its last ``{`` at the start of a line onwards)."""
    start = stdout.rfind("\n{") + 1 if not stdout.startswith("{") else 0
    try:
        return json.loads(stdout[start:])
    except json.JSONDecodeError as err:
        raise StageError(f"{what}: expected one JSON object on stdout, got {stdout[-500:]!r} ({err})") from None


# --- the stages: each returns (command, parse); parse(returncode, stdout) -> (status, result) -----------------
PY = sys.executable


def environment(ctx: dict):
    code = ("import json, platform, torch; cuda = torch.cuda.is_available(); print(json.dumps({"
            "'python': platform.python_version(), 'torch': torch.__version__, 'torch_cuda': torch.version.cuda, "
            "'cuda_available': cuda, 'gpu_count': torch.cuda.device_count() if cuda else 0, "
            "'gpu_name': torch.cuda.get_device_name(0) if cuda else None, "
            "'gpu_capability': list(torch.cuda.get_device_capability(0)) if cuda else None, "
            "'bf16_supported': torch.cuda.is_bf16_supported() if cuda else None}))")

    def parse(returncode: int, stdout: str):
        result = json_of(stdout, "environment")
        result["nvidia_smi"] = _nvidia_smi()
        # A copy of the tree without .git (as some GPU machines get) is named by GPU_CHECK_COMMIT instead.
        result["commit"] = _git("rev-parse", "HEAD") or os.environ.get("GPU_CHECK_COMMIT")
        status = _git("status", "--porcelain", "--untracked-files=no")
        result["worktree_changed"] = None if status is None else bool(status)
        result["cpu_count"] = os.cpu_count()
        result["packages_off_pin"] = _packages_off_pin()
        if not ctx["dry_run"] and not result["cuda_available"]:
            return "failed", result | {"error": "PyTorch sees no CUDA device (torch " + result["torch"] + ")"}
        return ("ok" if returncode == 0 else "error"), result

    return [PY, "-c", code], parse


def gpu_tests(ctx: dict):
    # The files that carry the mark (a decorator or a module's pytestmark): collecting the whole suite
    # costs a minute on a small machine, for the same selection.
    marked = re.compile(r"^\s*(@(pytest\.)?mark\.gpu\b|pytestmark\b.*mark\.gpu\b)", re.MULTILINE)
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if marked.search(p.read_text()))
    junit = ctx["work"] / "gpu-tests.xml"
    command = [PY, "-m", "pytest", "-m", "gpu", "-n", "0", "-p", "no:cacheprovider", "-q", "-rA",
               f"--junitxml={junit}", *files]

    def parse(returncode: int, stdout: str):
        import xml.etree.ElementTree as ET

        if not junit.is_file():
            raise StageError(f"pytest wrote no {junit.name} (exit {returncode}): {stdout[-1000:]}")
        root = ET.parse(junit).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        outcomes = {}
        for case in suite.iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            skip = case.find("skipped")
            outcomes[name] = ("failed: " + (bad.get("message") or "")[:300] if bad is not None
                              else "skipped: " + (skip.get("message") or "") if skip is not None else "passed")
        result = {"files": files, "selected": counts["tests"],
                  "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                  "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
                  "outcomes": outcomes, "exit_status": returncode}
        if not files or counts["tests"] == 0:
            raise StageError(f"no gpu-marked test was collected from {files}")
        if counts["failures"] + counts["errors"] or returncode:
            failed = [name for name, outcome in outcomes.items() if outcome.startswith("failed")]
            return "failed", result | {"error": f"pytest exit {returncode}; failed: {failed}"}
        return "ok", result

    return command, parse


def bench(ctx: dict):
    command = [PY, "-m", "src.main", "bench", *SIZES[ctx["dry_run"]]["bench"], "--json"]

    def parse(returncode: int, stdout: str):
        report = json_of(stdout, "bench")
        training, mfu = report["training_tokens_per_s"], report["mfu"]
        result = {
            "settings": report["settings"],
            "training_tokens_per_s": {name: training[name]["median"] for name in ("ours", "torch")},
            "training_ratio_ours_over_torch": report["ratios"]["training"],
            "decoding_tokens_per_s": {name: report["decoding_tokens_per_s"][name]["median"]
                                      for name in ("cached", "uncached")},
            "decoding_ratio_cached_over_uncached": report["ratios"]["decoding"],
            "max_abs_logit_diff": report["max_abs_logit_diff"],
            "achieved_tflops": mfu["achieved_tflops"], "peak_tflops": mfu["peak_tflops"],
            "mfu": mfu["utilisation"], "mfu_target": mfu["target"], "meets_targets": report["meets_targets"],
        }
        return ("ok" if returncode == 0 else "error"), result

    return command, parse


def train(ctx: dict):
    limit = ctx["limits"]["train"]
    minutes = max(0.5, (limit - TRAIN_OVERHEAD_S) / 60) if not ctx["dry_run"] else 1.0
    command = [PY, "-m", "src.main", "train", "--config", "config/gpu.yaml", "--offline",
               f"output_dir={ctx['work'] / 'runs'}", f"training.max_minutes={minutes:.2f}", *SIZES[ctx["dry_run"]]["train"]]

    def parse(returncode: int, stdout: str):
        match = re.search(r"^run folder:\s+(\S+)$", stdout, re.MULTILINE)
        if not match:
            raise StageError(f"train printed no 'run folder:' line (exit {returncode}): {stdout[-1000:]}")
        run = Path(match.group(1))
        ctx["run"] = str(run)
        steps = json.loads((run / "status.json").read_text())["steps"]
        metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
        history = [json.loads(line) for line in (run / "train" / "train_history.jsonl").read_text().splitlines()]
        speeds = sorted(row["tokens_per_s"] for row in history[1:] if "tokens_per_s" in row)  # the first: warm-up
        result = {"run": str(run), "max_minutes": round(minutes, 2), "steps": steps["train"]["output"]["steps"],
                  "bleu": {"beam": metrics["beam"]["bleu"], "greedy": metrics["greedy"]["bleu"]},
                  "chrf": metrics["beam"]["chrf"], "test_sentences": metrics["n_sentences"],
                  "test_loss": metrics["test"]["loss"], "best_valid_loss": steps["train"]["output"]["best_valid_loss"],
                  "train_tokens_per_s_median": speeds[len(speeds) // 2] if speeds else None,
                  "step_status": {name: step["status"] for name, step in steps.items()}}
        return ("ok" if returncode == 0 else "error"), result

    return command, parse


def export(ctx: dict):
    command = [PY, "-m", "src.main", "export", ctx["run"]]

    def parse(returncode: int, stdout: str):
        folder = Path(stdout.strip().splitlines()[-1]) if stdout.strip() else None
        if returncode != 0 or folder is None or not (folder / "export.json").is_file():
            raise StageError(f"export (exit {returncode}) printed {stdout[-500:]!r}, expected a folder with export.json")
        manifest = json.loads((folder / "export.json").read_text())
        return "ok", {"folder": str(folder), "graphs": sorted(manifest["graphs"]),
                      "checked_cases": len(manifest["checked"]["cases"]),
                      "checked_max_abs_diff": manifest["checked"]["max_abs_diff"]}

    return command, parse


def parity(ctx: dict):
    command = [PY, "-m", "src.export.parity", ctx["run"], *SIZES[ctx["dry_run"]]["parity"], "--json"]

    def parse(returncode: int, stdout: str):
        report = json_of(stdout, "parity")
        beam = next(key for key in report if key.startswith("beam"))
        result = {"sentences": report["sentences"], "greedy_identical": report["greedy"], "beam": beam,
                  "beam_identical": report[beam], "max_abs_logit_diff": report["max_abs_logit_diff"],
                  "atol": report["atol"], "parity": report["ok"],
                  "note": "both sides on the CPU: the export check runs PyTorch and ONNX Runtime (CPU build) there"}
        if not report["ok"] or returncode:
            return "failed", result | {"error": (
                f"no parity: greedy {report['greedy']}/{report['sentences']}, {beam} {report[beam]}/{report['sentences']} "
                f"identical, logits {report['max_abs_logit_diff']:.2e} (allowed {report['atol']:.0e})")}
        return "ok", result

    return command, parse


def serving(ctx: dict):
    import yaml

    sizes = SIZES[ctx["dry_run"]]
    config = ctx["work"] / "serving.yaml"
    base = yaml.safe_load((REPO / "config" / "serving.yaml").read_text())
    config.write_text(yaml.safe_dump({**base, "device": sizes["serving_device"]}))
    command = [PY, "-m", "src.serving.bench", ctx["run"], *sizes["serving"], "--backend", "torch",
               "--config", str(config), "--json"]

    def parse(returncode: int, stdout: str):
        report = json_of(stdout, "serving bench")
        rows = [{key: row[key] for key in ("mode", "concurrency", "requests", "errors", "sentences_per_s",
                                           "p50_ms", "p99_ms")} for row in report["rows"]]
        speedups = {key: value for key, value in report.items() if key.startswith("speedup")}
        if len(speedups) != 2:
            raise StageError(f"serving bench: expected two speedup_* keys, got {sorted(speedups)}")
        result = {"device": sizes["serving_device"], "backend": report["backend"], "task": report["task"],
                  "window_ms": report["window_ms"], "max_batch_size": report["max_batch_size"],
                  "rows": rows, **speedups}
        errors = sum(row["errors"] for row in rows)
        if errors or returncode:
            return "failed", result | {"error": f"{errors} request(s) failed (exit {returncode})"}
        return "ok", result

    return command, parse


STAGES = {"environment": environment, "gpu_tests": gpu_tests, "bench": bench, "train": train,
          "export": export, "parity": parity, "serving": serving}


def _nvidia_smi() -> dict:
    query = "name,driver_version,memory.total,power.limit,clocks.max.sm"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {"gpus": [dict(zip(query.split(","), (v.strip() for v in line.split(","))))
                     for line in out.strip().splitlines()]}


def _packages_off_pin() -> dict[str, str | None]:
    """The requirements.txt pins this interpreter does not hold: {name: installed version, None if missing}.

    A GPU machine often brings its own torch; the figures then belong to that version, not the pin.
    """
    from importlib import metadata

    off = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, _, pinned = line.split("#")[0].strip().partition("==")
        if not pinned:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != pinned:  # 2.13.0+cu130 meets the pin 2.13.0
            off[name] = installed
    return off


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_stage(name: str, ctx: dict, deadline: float) -> dict:
    """One stage under its limit (and what is left of the budget); its record for the JSON."""
    needed = NEEDS.get(name)
    if needed and not ctx["given_run"]:
        ctx["done"][needed].wait()  # set once that stage's record exists (or it is not run: then no run)
        if ctx["status"].get(needed) != "ok":
            return {"status": "skipped",
                    "error": f"needs the {needed} stage, which ended {ctx['status'].get(needed, 'not run')}"}
    if needed and not ctx.get("run"):
        return {"status": "skipped", "error": "no run to read: give --run with --stages " + name}
    limit = min(ctx["limits"][name], max(1.0, deadline - time.monotonic()))
    start = time.monotonic()
    record: dict = {"limit_s": round(limit, 1)}
    log = ctx["work"] / f"{name}.log"
    try:
        command, parse = STAGES[name](ctx)
        record["command"] = ["python" if part == PY else part for part in command]
        returncode, stdout = run_command(command, limit, log)
        record["exit_status"] = returncode
        record["status"], record["result"] = parse(returncode, stdout)
        if "error" in record["result"]:  # a stage that ran and failed: the reason, beside the status
            record["error"] = record["result"].pop("error")
    except subprocess.TimeoutExpired:
        record |= {"status": "timeout", "error": f"stopped after its limit of {limit:.0f} s"}
    except Exception as err:  # a stage's failure is a result: record it and go on with the next stage
        record |= {"status": "error", "error": f"{type(err).__name__}: {err}"}
    record["seconds"] = round(time.monotonic() - start, 1)
    if record["status"] != "ok" and log.is_file():
        record["stderr_tail"] = log.read_text(errors="replace")[-3000:]
    return record


def write(report: dict, out: Path) -> None:
    """Replace ``out`` whole, so that a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)


def default_out() -> Path:
    return Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") else Path("gpu-check.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=".ci/gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON of results (default: $OUT/gpu-check.json if OUT is set, else gpu-check.json)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every stage on the CPU at the smallest sizes: checks the plumbing, measures nothing")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES), metavar="STAGE",
                        help=f"stages to run, in the check's order (default: all: {' '.join(STAGES)})")
    parser.add_argument("--run", default=None,
                        help="a finished run folder for export, parity and serving when the train stage is left out")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds for all stages together (default {BUDGET_S:.0f}); no stage outlives it")
    parser.add_argument("--jobs", type=int, default=None, choices=[1, 2, 3],
                        help="stages at a time (default 1, and 2 with --dry-run); on a GPU keep 1, as stages side "
                             "by side disturb each other's timings")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where runs, logs and exports go (default: a temporary folder, removed at the end)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from loguru import logger

    args = parse_args(argv)
    jobs = args.jobs or (2 if args.dry_run else 1)
    out = (args.out or default_out()).resolve()
    chosen = [name for name in (PARALLEL_ORDER if jobs > 1 else STAGES) if name in args.stages]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = (args.work_dir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        limits = {name: DRY_LIMIT_S for name in STAGES} if args.dry_run else dict(LIMITS_S)
        ctx = {"dry_run": args.dry_run, "work": work, "limits": limits, "given_run": args.run is not None,
               "run": str(Path(args.run).resolve()) if args.run else None, "status": {},
               "done": {name: threading.Event() for name in STAGES}}
        for name in set(STAGES) - set(chosen):
            ctx["done"][name].set()  # not run: a stage that needs it is skipped, not left waiting
        started = time.monotonic()
        deadline = started + (args.budget if not args.dry_run else len(STAGES) * DRY_LIMIT_S)
        report = {"dry_run": args.dry_run, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "budget_s": args.budget, "jobs": jobs, "stages": {}}
        lock = threading.Lock()

        def one(name: str) -> None:
            logger.info("gpu-check: {} starts", name)
            record = run_stage(name, ctx, deadline)
            with lock:
                ctx["status"][name] = record["status"]
                report["stages"][name] = record
                report["stages"] = {n: report["stages"][n] for n in STAGES if n in report["stages"]}
                if name == "environment" and "result" in record:
                    report["environment"] = record["result"]
                report["seconds"] = round(time.monotonic() - started, 1)
                write(report, out)
            ctx["done"][name].set()
            logger.info("gpu-check: {} {} in {} s{}", name, record["status"], record.get("seconds", 0),
                        f": {record['error']}" if record.get("error") else "")

        with ThreadPoolExecutor(jobs) as pool:
            for future in [pool.submit(one, name) for name in chosen]:
                future.result()
        statuses = {name: record["status"] for name, record in report["stages"].items()}
        report["all_ok"] = all(status == "ok" for status in statuses.values())
        report["seconds"] = round(time.monotonic() - started, 1)
        write(report, out)
    logger.info("gpu-check: {} in {:.0f} s; {}", out, report["seconds"],
                ", ".join(f"{name} {status}" for name, status in statuses.items()))
    print(out)  # the script's output: where the results are
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
