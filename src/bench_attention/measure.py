"""One measurement, in a process of its own: median time and peak memory of forward + backward.

    python -m src.bench_attention.measure '{"module": "attention", "n": 1024, ...}' RESULT.json

writes one JSON object to RESULT.json (the parent reads nothing from stdout): ``time_ms`` (median),
``times_ms``, ``peak_mib``, ``baseline_mib``, or ``skipped`` when an allocation failed. The parent
(``runner.py``) starts one such process per (module, variant, n), so that what one measurement
allocated cannot hide in the next one's peak.

Peak memory is what one forward + backward adds to what the inputs, the weights and the
warmed-up runtime already hold, measured in one pass before the timed ones. On CPU: resident
memory, ``VmHWM - VmRSS`` from ``/proc/self/status``, the high-water mark reset just before the
pass (``/proc/self/clear_refs``), with glibc told at start to serve every allocation of a page or
more with its own mmap (``mallopt(M_MMAP_THRESHOLD)``), so that a freed tensor leaves the process
and the next one is counted again, and to return the pages of its free small blocks just before
the pass (``malloc_trim``). The timed passes then run with glibc's usual reuse of freed
blocks. On CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the pass.
"""

import ctypes
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from src.bench_attention.grid import MIB, VARIANTS

if TYPE_CHECKING:
    from torch import nn

MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}  # glibc malloc.h
MMAP_THRESHOLD_BYTES = 4096  # one page: the memory pass only, so the mmap calls cost no timing


def _mallopt(**params: int) -> bool:
    """glibc's ``mallopt`` for each of ``params``; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(MALLOPT[name], value) == 1 for name, value in params.items())
    except (OSError, AttributeError):
        return False


def return_freed_memory_to_the_os() -> bool:
    """Serve every block of a page or more with its own mmap, so that ``free`` unmaps it (glibc).

    Set before torch allocates: a freed large block left in glibc's arenas would keep its pages
    resident, and the next tensor placed elsewhere would count twice.
    """
    return _mallopt(M_MMAP_THRESHOLD=MMAP_THRESHOLD_BYTES)


def release_free_memory() -> bool:
    """Return the pages of the blocks glibc's arenas hold free (``malloc_trim``), so that reusing
    one counts again; False where libc is not glibc."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim(0) in (0, 1)
    except (OSError, AttributeError):
        return False


def allocate_like_a_training_process() -> bool:
    """glibc's steady state in a long-running process: freed blocks up to 32 MiB are reused from its
    arenas (the dynamic mmap threshold's ceiling on 64-bit), which saves the page faults."""
    return _mallopt(M_MMAP_THRESHOLD=32 * MIB, M_TRIM_THRESHOLD=64 * MIB)


def proc_status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line (expected Linux)")


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current VmRSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def timed_peak(run_once: Callable[[], None], repeats: int, device: str, warmup_s: float = 0.5) -> dict:
    """Warm up, measure the peak memory of one call beyond the baseline, then time ``repeats`` calls.

    One contestant per process, so there is nothing to interleave (``src/bench.py`` alternates
    contestants that share a process). The warm-up keeps thread pools and first-call dispatch out
    of the baseline and the timings. On CPU the memory call runs with every block of a page or
    more unmapped when freed, the timed calls with glibc's usual reuse of freed blocks.
    """
    import torch

    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    if not cuda:
        return_freed_memory_to_the_os()  # main() did it already; here too for callers that did not
    warm_up(run_once, sync, warmup_s)
    baseline, peak = peak_memory(run_once, device)
    if not cuda:
        allocate_like_a_training_process()
        warm_up(run_once, sync, warmup_s)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_once()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    return {"time_ms": statistics.median(times), "best_ms": min(times), "times_ms": times,
            "peak_mib": max(peak - baseline, 0) / MIB, "baseline_mib": baseline / MIB}  # fmt: skip


def warm_up(run_once: Callable[[], None], sync: Callable[[], None], seconds: float) -> None:
    """At least one call, and more until ``seconds`` have passed (short lengths need several)."""
    start = time.perf_counter()
    while True:
        run_once()
        sync()
        if time.perf_counter() - start >= seconds:
            return


def peak_memory(run_once: Callable[[], None], device: str) -> tuple[int, int]:
    """(baseline, peak) bytes around one call of ``run_once``: allocated on CUDA, resident on CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        run_once()
        torch.cuda.synchronize(device)
        return baseline, torch.cuda.max_memory_allocated(device)
    release_free_memory()
    baseline = proc_status_bytes("VmRSS")
    reset_peak_rss()  # without it (before Linux 4.0) the peak also covers the warm-up: the same work
    run_once()
    return baseline, proc_status_bytes("VmHWM")


def build_module(job: dict) -> "nn.Module":
    """The attention layer or the pre-norm encoder layer of a variant, without dropout."""
    pattern = dict(VARIANTS[job["variant"]])
    backend = pattern.pop("backend")
    if pattern["attention"] != "full":
        pattern["window"] = job["window"]
    else:
        pattern = {}  # the defaults: full attention
    if job["module"] == "attention":
        from src.components.attention import MultiHeadAttention

        return MultiHeadAttention(job["d_model"], job["n_heads"], dropout=0.0, backend=backend, **pattern)
    from src.config.model import ModelConfig
    from src.models.transformer import build_encoder

    cfg = ModelConfig(
        family="encoder_classifier", d_model=job["d_model"], n_heads=job["n_heads"], n_encoder_layers=1,
        d_ff=job["d_ff"], dropout=0.0, norm_first=True, max_positions=job["n"], attention_backend=backend,
        **pattern,
    )  # fmt: skip
    return build_encoder(cfg)


def forward_backward(job: dict) -> Callable[[], None]:
    """A closure that runs one forward and backward pass of a batch of one sequence of ``n`` tokens."""
    import torch

    torch.manual_seed(job["seed"])
    device = torch.device(job["device"])
    module = build_module(job).to(device).train()
    x = torch.randn(1, job["n"], job["d_model"], device=device, requires_grad=True)  # (B, T, C)
    grad_out = torch.randn(1, job["n"], job["d_model"], device=device)

    def run_once() -> None:
        out, _ = module(x) if job["module"] == "attention" else module(x, None)
        out.backward(grad_out)
        x.grad = None  # so the baseline between passes holds the weights and inputs only
        module.zero_grad(set_to_none=True)

    return run_once


def measure(job: dict) -> dict:
    """Time and peak memory of one (module, variant, n); ``skipped`` when memory ran out."""
    import torch

    torch.set_num_threads(job["threads"])
    try:
        return timed_peak(forward_backward(job), job["repeats"], job["device"], job["warmup_s"])
    except torch.OutOfMemoryError as err:  # CUDA
        return {"skipped": f"out of memory: {str(err).splitlines()[0]}"}
    except RuntimeError as err:
        if "can't allocate memory" not in str(err):  # CPU: DefaultCPUAllocator
            raise
        return {"skipped": f"out of memory: {str(err).splitlines()[0]}"}


def volunteer_for_the_oom_killer() -> None:
    """If memory runs out anyway, the kernel ends this process first, not a neighbour's."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def main(argv: list[str]) -> int:
    return_freed_memory_to_the_os()  # first: before torch allocates anything
    volunteer_for_the_oom_killer()
    job, result = json.loads(argv[0]), Path(argv[1])
    result.write_text(json.dumps(measure(job)), encoding="utf-8")  # the parent reads it (runner.run_child)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
