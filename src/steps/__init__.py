"""One library function per pipeline step: data prep, tokenization, train, evaluate, register.

Each ``run`` validates its configuration again (parameters may arrive as strings from ClearML),
opens its own tracked task, does its work (``src/steps/<task>.py`` for the configured task),
uploads what a reviewer needs and returns a small dict of ids and paths that the next step takes.

``STEPS`` is the pipeline's one table: the ClearML ``PipelineController`` (``pipelines/pipeline.py``)
and the offline runner (``pipelines/offline.py``) both read it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSpec:
    """One step of the DAG: its parents, which outputs it takes as which arguments, its task type.

    ``cache``: ClearML may reuse the step's earlier result for equal inputs, and ``--resume``
    reuses its completed output (``check_resume`` refuses changes to its config sections).
    """

    name: str
    parents: tuple[str, ...]
    inputs: dict[str, str]  # function argument -> "${<step>.<return name>}" (ClearML's reference syntax)
    task_type: str
    cache: bool = False

    def upstream(self) -> dict[str, str]:
        """Function argument -> the step whose output it is: ``{"data": "data_prep"}``."""
        return {argument: reference.strip("${}").split(".")[0] for argument, reference in self.inputs.items()}


STEPS = (
    StepSpec("data_prep", (), {}, "data_processing", cache=True),
    StepSpec("tokenize", ("data_prep",), {"data": "${data_prep.output}"}, "data_processing", cache=True),
    StepSpec("train", ("tokenize",), {"tokenized": "${tokenize.output}"}, "training"),
    StepSpec("evaluate", ("tokenize", "train"), {"tokenized": "${tokenize.output}", "trained": "${train.output}"}, "testing"),
    StepSpec("register", ("train", "evaluate"), {"trained": "${train.output}", "evaluated": "${evaluate.output}"}, "custom"),
)
STEP_NAMES = tuple(spec.name for spec in STEPS)
