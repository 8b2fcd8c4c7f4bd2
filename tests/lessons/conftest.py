"""Run a lesson straight through in this process, tracking off, and hand its step results to the test."""

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from rich.console import Console

from src.lessons.runner import run_lesson
from src.lessons.step import StepResult
from src.tracking import NullTracker


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The lessons' models are tiny: one thread is fastest and keeps timings steady on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, StepResult]]:
    """``lesson(name)``: its results by step title (run once per session), its PNGs checked on disk."""
    done: dict[str, dict[str, StepResult]] = {}

    def run(name: str) -> dict[str, StepResult]:
        if name not in done:
            output_dir = tmp_path_factory.mktemp(name)
            console = Console(file=io.StringIO(), width=120)
            results = run_lesson(name, tracker=NullTracker(output_dir=output_dir), console=console)
            from src.lessons.runner import lesson_module

            steps = lesson_module(name).STEPS
            assert len(results) == len(steps)
            text = console.file.getvalue()
            for step, result in zip(steps, results, strict=True):
                assert " ".join(result.outcome.split()) in " ".join(text.split()), f"{step.title}: outcome not shown"
                for figure_name in result.figures:
                    pngs = list(Path(output_dir, "plots").rglob(f"{figure_name}_step0000000.png"))
                    assert pngs, f"{name}/{step.title}: no PNG for figure {figure_name!r}"
            done[name] = {step.title: result for step, result in zip(steps, results, strict=True)}
        return done[name]

    return run
