"""Curve points reported while a step runs, so the tracker's Scalars tab shows a curve as it grows.

A step's experiment does not know the tracker. The runner installs a sink around each run of a
step (``reporting``) and ``toy.train`` calls ``report`` after every optimizer step. Outside such a
run (a test calling a step function directly) there is no sink and ``report`` does nothing.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Sink = Callable[[str, float, int], None]  # (series, value, step)
_SINK: ContextVar[Sink | None] = ContextVar("lesson_curve_sink", default=None)


def report(series: str, value: float, step: int) -> None:
    """One point of the curve ``series``, at iteration ``step``, to the installed sink, if any."""
    sink = _SINK.get()
    if sink is not None:
        sink(series, value, step)


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send every ``report`` inside the block to ``sink``."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)
