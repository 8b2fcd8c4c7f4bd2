"""Run a lesson: print each step's explanation, run its experiment, show and record the result.

Straight through by default (tests, agents). With ``interactive`` the learner types a new value
of the step's knob after each result and sees the experiment again at once; an empty line moves
to the next step, ``q`` ends the lesson.
"""

from collections.abc import Callable, Collection
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from src.lessons.live import reporting
from src.lessons.step import Step, StepResult
from src.tracking import TrackerLike

LESSONS = ("attention", "multi_head", "positions", "masking", "residuals", "training_dynamics", "decoding",
           "heads", "encoder_only", "decoder_only", "vit", "efficient_attention", "modern_blocks",
           "pretraining")
QUIT = "q"


def lesson_module(name: str) -> ModuleType:
    """``src.lessons.<name>``, or ValueError listing the lessons."""
    if name not in LESSONS:
        raise ValueError(f"unknown lesson {name!r}; the lessons are: {', '.join(LESSONS)}")
    return import_module(f"src.lessons.{name}")


def summary(name: str) -> str:
    """The first line of a lesson module's docstring."""
    return (lesson_module(name).__doc__ or "").strip().splitlines()[0]


def lesson_list() -> str:
    """Every lesson's name and one-line summary, one per line."""
    width = max(map(len, LESSONS))
    lines = [f"{name:<{width}}  {summary(name)}" for name in LESSONS]
    return "\n".join(["lessons (run one: python -m src.main lesson NAME [--interactive]):", *lines])


def parameters(name: str) -> dict[str, Any]:
    """The knobs of a lesson at their defaults, ``{"step title": {"knob": value}}``, for the tracker."""
    steps: list[Step] = lesson_module(name).STEPS
    return {"lesson": name,
            **{f"{i + 1:02d} {s.title}": {s.knob.name: s.knob.default} for i, s in enumerate(steps)}}


def run_lesson(name: str, *, tracker: TrackerLike, console: Console, interactive: bool = False,
               ask: Callable[[str], str] = input) -> list[StepResult]:
    """Run every step of lesson ``name``; the result of each step's last run, in order.

    Args:
        name: one of ``LESSONS``.
        tracker: records parameters, figures, tables, curves and numbers (``NullTracker``: only PNGs).
        console: where the lesson is shown.
        interactive: after each result, ask for a new knob value (empty: next step, ``q``: stop).
        ask: reads one line of the learner's input, given the prompt.
    """
    steps: list[Step] = lesson_module(name).STEPS
    tracker.connect_config(parameters(name), name="lesson")
    console.rule(f"[bold]lesson {name}[/bold]: {escape(summary(name))}")
    results, changed, stopped = [], {}, False
    for index, step in enumerate(steps, start=1):
        console.print(Panel(escape(" ".join(step.explanation.split())), expand=False,
                            title=escape(f"step {index}/{len(steps)}: {step.title}")))
        result, stopped = _explore(step, f"{index:02d} {step.title}", tracker, console, changed,
                                   ask if interactive else None)
        results.append(result)
        if stopped:
            logger.info("lesson {} stopped at step {}", name, index)
            break
    if changed:
        tracker.connect_config(changed, name="interactive")
    if not stopped:
        console.rule(f"lesson {name}: done")
    return results


def _explore(step: Step, title: str, tracker: TrackerLike, console: Console, changed: dict[str, Any],
             ask: Callable[[str], str] | None) -> tuple[StepResult, bool]:
    """Run one step at its default, then (with ``ask``) at each value the learner types.

    Returns the last result shown and whether the learner quit; each typed value is added to ``changed``.
    """
    value, attempt, result = step.knob.default, 0, None
    while True:
        try:
            shown = _run_step(step, value, title, attempt, tracker)
        except ValueError as err:  # a value the knob's bounds let through but the experiment refuses
            if result is None:
                raise
            console.print(Text(str(err), style="red"))
        else:
            result = shown
            show(result, console, f"{step.knob.name} = {value}")
        if ask is None:
            return result, False
        value, stop = _next_value(step, console, ask)
        if stop or value is None:
            return result, stop
        attempt += 1
        changed[f"{title}/{step.knob.name}#{attempt}"] = value


def _run_step(step: Step, value: Any, title: str, attempt: int, tracker: TrackerLike) -> StepResult:
    """One run of the step's experiment, its curve points sent to the tracker as they are produced."""
    live: set[str] = set()

    def sink(series: str, point: float, iteration: int) -> None:
        tracker.log_scalar(f"{title} (run {attempt})", series, point, iteration)
        live.add(series)

    with reporting(sink):
        result = step.run(value)
    record(result, tracker, title, attempt, already_logged=live)
    return result


def _next_value(step: Step, console: Console, ask: Callable[[str], str]) -> tuple[Any, bool]:
    """(new value or None for the next step, whether to quit), asking again after a bad value."""
    while True:
        try:
            text = ask(f"{step.knob.name} [{step.knob.help}] (enter: next step, q: quit)> ")
        except EOFError:
            return None, True
        if text.strip() == "":
            return None, False
        if text.strip().lower() == QUIT:
            return None, True
        try:
            return step.knob.parse(text), False
        except ValueError as err:
            console.print(Text(str(err), style="red"))


def show(result: StepResult, console: Console, setting: str) -> None:
    """The step's table, extra renderables and outcome in the terminal."""
    if result.columns:
        table = Table(*result.columns, title=setting)
        for row in result.rows:
            table.add_row(*(escape(_cell(v)) for v in row))
        console.print(table)
    for renderable in result.extra:
        console.print(renderable)
    console.print(f"[bold green]result[/bold green] ({escape(setting)}): {escape(result.outcome)}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def record(result: StepResult, tracker: TrackerLike, title: str, attempt: int,
           already_logged: Collection[str] = ()) -> None:
    """Figures as plots and debug images (and PNGs), the table in Plots, curves as scalars, numbers as single
    values.

    ``attempt`` is the iteration: the default run is 0, each interactive change the next one. Curves
    in ``already_logged`` were sent point by point while the step ran; the others (e.g. a cached
    model's) are logged here at once.
    """
    import pandas

    for name, figure in result.figures.items():
        tracker.log_plot(title, name, figure, step=attempt)  # Plots tab, where two runs compare
        tracker.log_figure(title, name, figure, step=attempt)  # debug image and PNG; closes the figure
    if result.columns:
        frame = pandas.DataFrame([[_cell(v) for v in row] for row in result.rows],
                                 columns=list(result.columns))
        tracker.log_table(title, "table", frame, step=attempt)
    for series, values in result.curves.items():
        if series in already_logged:
            continue
        for i, value in enumerate(values):
            tracker.log_scalar(f"{title} (run {attempt})", series, value, i)
    for metric, value in result.metrics.items():
        if attempt == 0:
            tracker.log_single_value(f"{title}/{metric}", value)
        tracker.log_scalar(f"{title}/metrics", metric, value, attempt)
    tracker.log_text(f"{title} (run {attempt}): {result.outcome}", console=False)


def output_folder(name: str, output_dir: str | Path | None) -> Path:
    """``output_dir``, or ``runs/lessons/<name>-<UTC time>``."""
    if output_dir is not None:
        return Path(output_dir)
    from datetime import UTC, datetime

    return Path("runs") / "lessons" / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
