"""The parent side: one child process per (module, variant, n), and the skips that spare memory.

A point is skipped, with its reason, when its predicted peak exceeds the memory limit (on CPU by
default 80% of ``MemAvailable`` less 512 MiB for the child's own runtime), when the same variant
already ran out of memory at a shorter length, or when the child fails: out of memory, killed
(the OOM killer), timed out. The bench itself never stops on a point.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from src.bench_attention.grid import MIB

REPO = Path(__file__).resolve().parents[2]
CHILD_RUNTIME_BYTES = 512 * MIB  # torch's own resident memory in a child, beyond the measurement
AVAILABLE_FRACTION = 0.8
MATH_SCORE_COPIES = 4  # (H, n, n) fp32 tensors alive at the math path's peak: measured 3.1-3.5
WINDOW_SCORE_COPIES = 4  # the same allowance per (H, n, 2w+1) band of scores
ACTIVATION_COPIES = 12  # (n, d_model) fp32 tensors of projections and their gradients: measured <= 9
OUT_OF_MEMORY = ("out of memory", "killed by SIGKILL")  # how the reasons of a child that ran out begin


def jobs(settings: dict) -> Iterator[dict]:
    """Every (module, n, variant) in the order they run: all variants of one length together."""
    fixed = {key: settings[key] for key in ("d_model", "n_heads", "window", "d_ff", "repeats", "warmup_s",
                                           "threads", "device", "seed")}  # fmt: skip
    for module in settings["modules"]:
        for n in settings["lengths"]:
            for variant in settings["variants"]:
                yield {"module": module, "variant": variant, "n": n, **fixed}


def predicted_peak_bytes(job: dict) -> int:
    """A generous estimate of what forward + backward add, for deciding what not to start."""
    n, d, heads = job["n"], job["d_model"], job["n_heads"]
    width = ACTIVATION_COPIES * d + (3 * job["d_ff"] if job["module"] == "encoder_layer" else 0)
    linear = width * n * 4
    if job["variant"] == "full/math":
        return linear + MATH_SCORE_COPIES * heads * n * n * 4
    if job["variant"] == "full/sdpa":
        return linear
    keys = min(n, 2 * job["window"] + 1) + (1 if job["variant"] == "longformer" else 0)
    return linear + WINDOW_SCORE_COPIES * heads * n * keys * 4


def available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo``; None where there is no such file."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(fields["MemAvailable"].split()[0]) * 1024 if "MemAvailable" in fields else None


def memory_limit_bytes(settings: dict) -> int | None:
    """What one measurement may add: ``--max-memory-mib``, else (CPU) a share of what is available now."""
    if settings["max_memory_mib"] is not None:
        return int(settings["max_memory_mib"] * MIB)
    if settings["device"].startswith("cuda"):
        return None  # the child's CUDA allocator reports running out itself, without harm
    available = available_bytes()
    return None if available is None else int(AVAILABLE_FRACTION * available) - CHILD_RUNTIME_BYTES


def skip_reason(job: dict, limit: int | None) -> str | None:
    predicted = predicted_peak_bytes(job)
    if limit is not None and predicted > limit:
        return (f"predicted peak {predicted / MIB:.0f} MiB exceeds the memory limit of "
                f"{max(limit, 0) / MIB:.0f} MiB")
    return None


def run_child(job: dict, timeout_s: float) -> dict:
    """Run ``measure.py`` on ``job`` in a fresh Python; its JSON result, or ``skipped`` with the reason."""
    threads, path = str(job["threads"]), [str(REPO), os.environ.get("PYTHONPATH")]
    env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                        "PYTHONPATH": os.pathsep.join(filter(None, path))}
    with tempfile.TemporaryDirectory(prefix="bench-attention-") as folder:
        result = Path(folder) / "result.json"  # the child writes its record here, and nothing else
        command = [sys.executable, "-m", "src.bench_attention.measure", json.dumps(job), str(result)]
        try:
            proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"skipped": f"timed out after {timeout_s:.0f} s"}
        written = result.read_text(encoding="utf-8") if result.is_file() else None
    return outcome(proc.returncode, written, proc.stderr)


def outcome(returncode: int, result: str | None, stderr: str) -> dict:
    """A child's record from its exit status, the result file's text (None: not written) and its stderr."""
    if returncode == -9:
        return {"skipped": "killed by SIGKILL (the kernel's OOM killer, most likely: out of memory)"}
    if returncode == 0 and result:
        return json.loads(result)
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "no output")
    return {"skipped": f"failed (exit status {returncode}): {last.strip()}", "error": True}


def measure_all(settings: dict) -> list[dict]:
    """One record per (module, n, variant): the measurement or the reason it was skipped."""
    records: list[dict] = []
    points = len(settings["modules"]) * len(settings["lengths"]) * len(settings["variants"])
    limit = memory_limit_bytes(settings)
    logger.info("{} points, each in its own process; memory limit per point: {}", points,
                "none" if limit is None else f"{limit / MIB:.0f} MiB (checked again before each point)")
    out_of_memory: dict[tuple[str, str], int] = {}  # (module, variant) -> shortest n that ran out
    for job in jobs(settings):
        key = (job["module"], job["variant"])
        if key in out_of_memory:
            result = {"skipped": f"ran out of memory at n={out_of_memory[key]} already"}
        elif reason := skip_reason(job, memory_limit_bytes(settings)):
            result = {"skipped": reason}
        else:
            result = run_child(job, settings["timeout_s"])
        if result.get("skipped", "").startswith(OUT_OF_MEMORY):  # a longer sequence would run out too
            out_of_memory.setdefault(key, job["n"])
        record = {"module": job["module"], "variant": job["variant"], "n": job["n"], "time_ms": None,
                  "peak_mib": None} | result  # fmt: skip
        _log(record)
        records.append(record)
    return records


def _log(record: dict) -> None:
    where = f"{record['module']:<13} {record['variant']:<14} n={record['n']:<6}"
    if record.get("error"):
        logger.error(f"{where} {record['skipped']}")
    elif "skipped" in record:
        logger.warning(f"{where} skipped: {record['skipped']}")
    else:
        logger.info(f"{where} {record['time_ms']:10.1f} ms {record['peak_mib']:10.1f} MiB")
