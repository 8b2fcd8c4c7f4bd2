"""What a task is: its record (``TaskSpec``), and what its step bodies receive (``StepContext``).

A task is one package, ``src/tasks/<task>/``:

- ``__init__.py`` holds its ``TASK = TaskSpec(...)``: the config it accepts (model families, data
  sources, tokenizer kinds, how it batches) and the functions of its pipeline steps;
- ``steps.py`` holds those functions: data prep, tokenize, train, evaluate, the register step's gate,
  and the summary that ``train`` prints;
- ``task.py`` holds what the one training loop needs (``src.training.task.Task``): batches, loss,
  validation and the attention probe.

``src.tasks.TASKS`` lists the records; the experiment config's validators read them
(``src/experiment.py``) and the pipeline's steps call their functions (``src/steps``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # types only: the experiment config reads the task records
    from src.experiment import ExperimentConfig
    from src.inference import InferenceModel
    from src.tracking import TrackerLike

Output = dict[str, Any]  # a step's small JSON-safe result: ids, paths, metrics


@dataclass
class StepContext:
    """One running step: its name, the validated config, the run folder and the step's tracker."""

    name: str
    cfg: "ExperimentConfig"
    run_dir: Path
    tracker: "TrackerLike"

    @property
    def step_dir(self) -> Path:
        path = self.run_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class TaskSpec:
    """A task's record: the settings it accepts and the bodies of its five pipeline steps.

    The config checks (``ExperimentConfig``) read the first group; ``src/steps`` calls the second.
    """

    name: str  # the value of ``task`` in the config
    title: str  # how messages name it: "text classification"
    families: tuple[str, ...]  # model.family values it trains
    sources: tuple[str, ...]  # data.source values it reads
    tokenizer_kinds: tuple[str, ...]  # tokenizer.kind values its tokenize step makes
    # "tokens": variable-length examples in batches of batching.max_tokens tokens; "items": fixed-size
    # examples (images, language-model windows), batching.batch_size of them per batch
    batches: Literal["tokens", "items"]
    data_prep: Callable[[StepContext], Output]
    tokenize: Callable[[StepContext, Output], Output]
    train: Callable[[StepContext, Output, bool], Output]  # (step, tokenize output, resume)
    evaluate: Callable[[StepContext, Output, "InferenceModel"], Output]  # (step, tokenize output, best model)
    # the register step's metric and threshold
    gate: Callable[["ExperimentConfig", dict[str, Any]], dict[str, Any]]
    summary: Callable[["ExperimentConfig", dict[str, Output]], list[str]]  # the test figures ``train`` prints
    windows: bool = False  # language modelling: batching.block_size sets the training windows
    # further config rules of this task (raise ValueError naming the keys); run after the shared ones
    check: Callable[["ExperimentConfig"], None] = field(default=lambda cfg: None)
