"""The training-dynamics lesson's claims: warm-up rescues a high learning rate; smoothing raises the loss
floor;
the loss curves reach the tracker point by point while the models train."""

import io

import torch
from rich.console import Console

from src.lessons import toy, training_dynamics
from src.lessons.runner import run_lesson
from src.lessons.step import Knob, Step, StepResult
from tests.lessons.conftest import RecordingTracker


def test_without_warmup_a_high_learning_rate_trains_worse(lesson):
    m = lesson("training_dynamics")["learning-rate warm-up"].metrics
    assert m["loss_no_warmup"] > 1.5 * m["loss_warmup"]


def test_label_smoothing_raises_the_loss_floor_and_lowers_confidence(lesson):
    m = lesson("training_dynamics")["label smoothing"].metrics
    assert m["loss_eps_0.1"] > m["loss_eps_0"]
    assert m["loss_eps_0.1"] >= m["floor_eps_0.1"] > 0.4
    assert m["confidence_eps_0.1"] < m["confidence_eps_0"]


def test_every_loss_is_a_scalar_at_its_step_logged_before_the_steps_figures(lesson, lesson_tracker):
    result = lesson("training_dynamics")["learning-rate warm-up"]
    tracker = lesson_tracker("training_dynamics")
    title = "01 learning-rate warm-up"
    for series, losses in result.curves.items():
        points = tracker.scalars[(f"{title} (run 0)", series)]
        assert points == [(i, loss) for i, loss in enumerate(losses)], series  # once each, step = iteration
    first_figure = next(i for i, e in enumerate(tracker.events) if e[0] == "figure" and e[1] == title)
    curve_events = [
        i for i, e in enumerate(tracker.events) if e[0] == "scalar" and e[1] == f"{title} (run 0)"]
    assert len(curve_events) == sum(map(len, result.curves.values())) and max(curve_events) < first_figure


def test_each_point_reaches_the_tracker_before_the_next_training_step(monkeypatch):
    """A stand-in step trains 5 steps: point i is logged after batch i is drawn and before batch i + 1."""
    drawn, seen = [], []

    def loss_of_batch(model: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        drawn.append(len(drawn))
        return model(torch.randn(4, 3, generator=generator)).square().mean()

    def run(steps: int) -> StepResult:
        log = toy.train(torch.nn.Linear(3, 1), loss_of_batch, steps=steps, lr=1e-2, seed=0, series="loss")
        return StepResult(outcome="trained", curves={"loss": log.losses})

    class Watching(RecordingTracker):
        def log_scalar(self, title: str, series: str, value: float, step: int) -> None:
            seen.append((step, len(drawn)))
            super().log_scalar(title, series, value, step)

    monkeypatch.setattr(training_dynamics, "STEPS", [Step("stand-in", "trains a linear layer", run,
                                                          Knob("steps", 5, "steps"))])
    tracker = Watching()
    run_lesson("training_dynamics", tracker=tracker, console=Console(file=io.StringIO()))
    assert seen == [(i, i + 1) for i in range(5)]
    assert len(tracker.scalars[("01 stand-in (run 0)", "loss")]) == 5  # not logged again after the run
