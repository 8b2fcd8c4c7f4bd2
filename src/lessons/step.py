"""What a lesson is made of: a list of ``Step``s, each returning a ``StepResult``.

A step explains one idea (``explanation``), runs one experiment (``run``) with one value the
learner may change (``knob``), and returns numbers, a table and figures. No base classes: a
lesson module is ``STEPS = [Step(...), ...]`` and a docstring whose first line is its summary.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Knob:
    """The one parameter of a step the learner may change with ``--interactive``.

    Args:
        name: shown at the prompt, e.g. "d_k".
        default: the value the non-interactive run uses.
        help: what changing it shows, one line.
        choices: the allowed values of a text knob (empty: any value of ``default``'s type).
        low, high: inclusive bounds of a number knob (None: unbounded).
    """

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def parse(self, text: str) -> Any:
        """The typed value of ``text``, or ValueError naming what was expected."""
        text = text.strip()
        kind = type(self.default)
        if kind is bool:
            words = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False,
                     "no": False,
                     "0": False}
            if text.lower() not in words:
                raise ValueError(f"{self.name} expects on/off (or true/false), got {text!r}")
            return words[text.lower()]
        if self.choices:
            if text not in self.choices:
                raise ValueError(f"{self.name} expects one of {', '.join(self.choices)}, got {text!r}")
            return text
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{self.name} expects {'an integer' if kind is int else 'a number'}, got "
                             f"{text!r}") from None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{self.name} expects a value in [{self.low}, {self.high}], got {value}")
        return value


@dataclass
class StepResult:
    """What one run of a step shows and what the tests check.

    Args:
        outcome: one or two lines stating what the experiment measured (the step's claim, in numbers).
        metrics: the measured numbers, by name.
        columns, rows: a table of the experiment (printed with rich, logged as a ClearML table).
        figures: matplotlib figures by name (saved as PNG, logged as debug images).
        curves: per-step series, e.g. training losses by run (logged as ClearML scalars).
        extra: further rich renderables (e.g. the beam tree).
    """

    outcome: str
    metrics: dict[str, float] = field(default_factory=dict)
    columns: Sequence[str] = ()
    rows: list[Sequence[Any]] = field(default_factory=list)
    figures: dict[str, "Figure"] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    extra: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """One idea: its explanation, its experiment ``run(knob value) -> StepResult``, and its knob."""

    title: str
    explanation: str
    run: Callable[[Any], StepResult]
    knob: Knob
