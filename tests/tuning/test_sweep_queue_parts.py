"""Pieces of the ``sweep --queue`` path that need no server: the ranges ClearML gets, the threads joined."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from src.orchestration import SearchParameter, clearml_parameters, join_trial_threads, refuse_log_integers


def test_log_int_ranges_are_refused_and_the_others_map_to_their_clearml_range():
    from clearml.automation import LogUniformParameterRange, UniformIntegerParameterRange

    ok = (SearchParameter("config/training/lr", 1e-4, 1e-2, log=True),
          SearchParameter("config/training/warmup_steps", 10, 200, integer=True, step=10))
    lr, warmup = clearml_parameters(ok)
    assert isinstance(lr, LogUniformParameterRange) and (lr.min_value, lr.max_value) == pytest.approx(
        (-4, -2))
    assert isinstance(warmup, UniformIntegerParameterRange) and (warmup.min_value, warmup.max_value) == (
        10, 200)
    log_int = SearchParameter("config/model/d_ff", 64, 1024, log=True, integer=True)
    for call in (refuse_log_integers, clearml_parameters):
        with pytest.raises(ValueError, match="cannot search config/model/d_ff as a log-scaled int"):
            call((*ok, log_int))


def test_only_threads_started_after_the_snapshot_are_joined_and_within_the_timeout():
    """A pool that was running before the optimizer (someone else's) is not waited for; ours is, boundedly."""
    release_foreign, release_ours = threading.Event(), threading.Event()
    foreign = ThreadPoolExecutor(1)
    foreign.submit(release_foreign.wait)
    before = set(threading.enumerate())
    ours = ThreadPoolExecutor(1)
    ours.submit(lambda: time.sleep(0.3))
    ours.shutdown(wait=False)  # its worker ends after the sleep, as optuna's do once their job stopped
    try:
        start = time.monotonic()
        join_trial_threads(before, timeout_s=5)
        waited = time.monotonic() - start
        assert 0.2 < waited < 2  # our worker joined; the foreign one, still blocked, was not waited for
        assert all(not t.is_alive() for t in set(threading.enumerate()) - before
                   if t.name.startswith("ThreadPoolExecutor"))
        stuck = ThreadPoolExecutor(1)
        stuck.submit(release_ours.wait)
        start = time.monotonic()
        join_trial_threads(before, timeout_s=0.5)  # a thread that never ends: the timeout bounds the wait
        assert time.monotonic() - start < 1.5
    finally:
        release_foreign.set()
        release_ours.set()
        foreign.shutdown()
