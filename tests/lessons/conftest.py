"""Run a lesson straight through in this process, tracking off, and hand its step results to the test."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from rich.console import Console

from src.lessons.runner import run_lesson
from src.lessons.step import StepResult
from src.tracking import NullTracker

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The lessons' models are tiny: one thread is fastest and keeps timings steady on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RecordingTracker(NullTracker):
    """``NullTracker`` that also keeps the order of what was logged: ``events`` of (kind, title, series,
    step)."""

    def __init__(self, output_dir: Path | None = None):
        super().__init__(output_dir=output_dir)
        self.events: list[tuple[str, str, str, int]] = []

    def log_scalar(self, title: str, series: str, value: float, step: int) -> None:
        self.events.append(("scalar", title, series, step))
        super().log_scalar(title, series, value, step)

    def log_figure(self, title: str, series: str, figure: "Figure", step: int) -> None:
        self.events.append(("figure", title, series, step))
        super().log_figure(title, series, figure, step)


TRACKERS: dict[str, RecordingTracker] = {}


@pytest.fixture(scope="session")
def lesson_tracker(lesson) -> Callable[[str], RecordingTracker]:
    """``lesson_tracker(name)``: the tracker that recorded the session's run of lesson ``name``."""

    def tracker(name: str) -> RecordingTracker:
        lesson(name)
        return TRACKERS[name]

    return tracker


@pytest.fixture(scope="session")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, StepResult]]:
    """``lesson(name)``: its results by step title (run once per session), its PNGs checked on disk."""
    done: dict[str, dict[str, StepResult]] = {}

    def run(name: str) -> dict[str, StepResult]:
        if name not in done:
            output_dir = tmp_path_factory.mktemp(name)
            console = Console(file=io.StringIO(), width=120)
            TRACKERS[name] = RecordingTracker(output_dir=output_dir)
            results = run_lesson(name, tracker=TRACKERS[name], console=console)
            from src.lessons.runner import lesson_module

            steps = lesson_module(name).STEPS
            assert len(results) == len(steps)
            text = console.file.getvalue()
            for step, result in zip(steps, results, strict=True):
                assert " ".join(result.outcome.split()) in " ".join(text.split()), \
                    f"{step.title}: outcome not shown"
                for figure_name in result.figures:
                    pngs = list(Path(output_dir, "plots").rglob(f"{figure_name}_step0000000.png"))
                    assert pngs, f"{name}/{step.title}: no PNG for figure {figure_name!r}"
            done[name] = {step.title: result for step, result in zip(steps, results, strict=True)}
        return done[name]

    return run
