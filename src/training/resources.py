"""Resource use of this process: CPU memory always, GPU memory and utilisation where there is one."""

import psutil
import torch


def resource_usage() -> dict[str, float]:
    usage = {"cpu_rss_mb": psutil.Process().memory_info().rss / 2**20}
    if torch.cuda.is_available():
        usage["gpu_memory_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
        usage["gpu_memory_reserved_mb"] = torch.cuda.memory_reserved() / 2**20
        try:
            usage["gpu_utilization_percent"] = float(torch.cuda.utilization())
        except (RuntimeError, ModuleNotFoundError):  # needs pynvml; absent on some images
            pass
    return usage
