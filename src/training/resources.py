"""Resource use as a flat dict of numbers; the trainer logs it with
``tracker.log_scalars("resources", ...)``."""

import functools
import resource
import sys

import psutil

_MIB = 2**20


@functools.cache
def _this_process() -> psutil.Process:
    # one Process object, so cpu_percent measures the time since the previous call
    return psutil.Process()


def resource_usage() -> dict[str, float]:
    """CPU RSS (now and the process's peak) and utilisation; per CUDA device: allocated/reserved/peak memory,
    and utilisation if NVML works.

    torch is only consulted if the caller already imported it (this never imports torch).
    The first ``cpu_percent`` of a process is 0.0: psutil measures from the previous call.
    """
    process = _this_process()
    usage = {
        "cpu_rss_mb": process.memory_info().rss / _MIB,
        "cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "cpu_percent": process.cpu_percent(interval=None),
        "system_memory_percent": psutil.virtual_memory().percent,
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        for device in range(torch.cuda.device_count()):
            usage |= _cuda_usage(torch, device)
    return usage


def _cuda_usage(torch, device: int) -> dict[str, float]:
    prefix = f"gpu{device}"
    usage = {
        f"{prefix}_memory_allocated_mb": torch.cuda.memory_allocated(device) / _MIB,
        f"{prefix}_memory_reserved_mb": torch.cuda.memory_reserved(device) / _MIB,
        f"{prefix}_max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / _MIB,
    }
    try:  # whole-device figures (other processes included) need the driver, and NVML for utilisation
        free, total = torch.cuda.mem_get_info(device)
        usage[f"{prefix}_memory_used_percent"] = 100.0 * (total - free) / total
        usage[f"{prefix}_utilization_percent"] = float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001, S110 - no pynvml, or NVML unusable (some containers): never fail training
        pass
    return usage
