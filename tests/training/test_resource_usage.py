"""Resource figures the trainer logs as scalars."""

import pytest
import torch

from src.training.resources import resource_usage


def test_cpu_figures_are_present_and_plausible():
    usage = resource_usage()
    assert usage["cpu_rss_mb"] > 10.0  # this Python process with torch loaded
    assert 0.0 <= usage["system_memory_percent"] <= 100.0
    assert usage["cpu_percent"] >= 0.0
    assert all(isinstance(value, float) for value in usage.values())


def test_peak_rss_is_at_least_the_current_rss_and_sees_a_freed_allocation():
    before = resource_usage()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del block
    after = resource_usage()
    assert after["cpu_peak_rss_mb"] >= after["cpu_rss_mb"]
    assert after["cpu_peak_rss_mb"] >= before["cpu_rss_mb"] + 60


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only case")
def test_no_gpu_keys_without_cuda():
    assert not [key for key in resource_usage() if key.startswith("gpu")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_memory_follows_allocations():
    before = resource_usage()["gpu0_memory_allocated_mb"]
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    after = resource_usage()
    assert after["gpu0_memory_allocated_mb"] - before >= 63.0
    assert after["gpu0_max_memory_allocated_mb"] >= after["gpu0_memory_allocated_mb"]
    del block
