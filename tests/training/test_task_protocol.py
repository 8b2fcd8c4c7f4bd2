"""Every task class has what the loop calls (``src.training.task.Task``), with the loop's signatures: a new
task that forgets a method, or takes its arguments in another order, fails here, not mid-run."""

import dataclasses
import inspect

import pytest

from src.tasks.classification.task import ClassificationProbe, ClassificationTask
from src.tasks.image_classification.task import ImageAttentionProbe, ImageClassificationTask
from src.tasks.language_modeling.task import LanguageModelingTask, LanguageModelProbe
from src.tasks.masked_lm.task import MaskedLMProbe, MaskedLMTask
from src.tasks.translation.task import TranslationTask
from src.training.probe import AttentionProbe
from src.training.task import Probe, Task

TASK_CLASSES = [TranslationTask, ClassificationTask, LanguageModelingTask, ImageClassificationTask,
                MaskedLMTask]
PROBE_CLASSES = [AttentionProbe, ClassificationProbe, LanguageModelProbe, ImageAttentionProbe, MaskedLMProbe]


def protocol_mismatches(protocol: type, cls: type) -> list[str]:
    """What ``cls`` lacks of ``protocol``: members, or methods whose parameters the loop could not pass.

    A method matches when the protocol's parameters are the first of its own, by name and kind, and any
    further ones have defaults. An attribute (a property in the protocol) may be a dataclass field.
    """
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    problems = []
    for name, member in vars(protocol).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            if name not in fields and not hasattr(cls, name):
                problems.append(f"{cls.__name__} has no attribute {name!r}")
            continue
        theirs = getattr(cls, name, None)
        if not callable(theirs):
            problems.append(f"{cls.__name__} has no method {name!r}")
            continue
        expected = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        actual = list(inspect.signature(theirs).parameters.values())
        extra = actual[len(expected):]
        if [(p.name, p.kind) for p in actual[:len(expected)]] != expected or any(
                p.default is inspect.Parameter.empty for p in extra):
            problems.append(f"{cls.__name__}.{name}{inspect.signature(theirs)} does not take the protocol's "
                            f"{name}{inspect.signature(member)}")
    return problems


@pytest.mark.parametrize("cls", TASK_CLASSES, ids=lambda c: c.__name__)
def test_each_task_class_has_every_member_the_loop_calls(cls):
    assert protocol_mismatches(Task, cls) == []


@pytest.mark.parametrize("cls", PROBE_CLASSES, ids=lambda c: c.__name__)
def test_each_probe_class_has_the_report_the_loop_calls(cls):
    assert protocol_mismatches(Probe, cls) == []


def test_a_task_that_forgets_a_method_or_reorders_arguments_is_named():
    members = {name for name in vars(Task) if not name.startswith("_")}
    assert members == {"probe", "model_sizes", "lengths", "batch", "targets", "tokens", "loss", "validate"}

    @dataclasses.dataclass
    class Forgetful(TranslationTask):
        validate = None  # type: ignore[assignment]

    class Reordered(ClassificationTask):
        def loss(self, batch, model, label_smoothing):  # type: ignore[override]
            return super().loss(model, batch, label_smoothing)

    class NeedsMore(LanguageModelingTask):
        def batch(self, indices, device, pad_id):  # type: ignore[override]
            return super().batch(indices, device)

    assert protocol_mismatches(Task, Forgetful) == ["Forgetful has no method 'validate'"]
    assert [p.split("(")[0] for p in protocol_mismatches(Task, Reordered)] == ["Reordered.loss"]
    assert [p.split("(")[0] for p in protocol_mismatches(Task, NeedsMore)] == ["NeedsMore.batch"]
    assert protocol_mismatches(Task, object) == [f"object has no {kind} {name!r}" for name, kind in [
        ("probe", "attribute"), ("model_sizes", "method"), ("lengths", "method"), ("batch", "method"),
        ("targets", "method"), ("tokens", "method"), ("loss", "method"), ("validate", "method")]]
