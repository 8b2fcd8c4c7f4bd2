"""``src.tasks.TASKS`` is the one place a task is described: the config reads it; it fits the schema."""

import dataclasses
import inspect
import typing

import pytest

from src.config import DataConfig, ModelConfig, TokenizerConfig
from src.experiment import ExperimentConfig, validate_config
from src.tasks import TASKS

STEP_PARAMETERS = {"data_prep": ["step"], "tokenize": ["step", "data"],
                   "train": ["step", "tokenized", "resume"],
                   "evaluate": ["step", "tokenized"], "gate": ["cfg", "metrics"],
                   "summary": ["cfg", "outputs"]}


def literal_values(model, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def test_each_record_is_filed_under_its_name_and_the_config_offers_exactly_these_tasks():
    assert all(name == task.name for name, task in TASKS.items())
    assert literal_values(ExperimentConfig, "task") == set(TASKS)


def test_every_family_belongs_to_one_task_and_every_name_in_a_record_is_one_the_config_knows():
    families = [family for task in TASKS.values() for family in task.families]
    assert sorted(families) == sorted(set(families)) and set(families) == literal_values(ModelConfig,
                                                                                         "family")
    for task in TASKS.values():
        assert set(task.sources) <= literal_values(DataConfig, "source"), task.name
        assert set(task.tokenizer_kinds) <= literal_values(TokenizerConfig, "kind"), task.name
        assert task.batches in ("tokens", "items"), task.name


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_record_holds_the_bodies_of_its_steps(name):
    task = TASKS[name]
    for step, parameters in STEP_PARAMETERS.items():
        function = getattr(task, step)
        assert list(inspect.signature(function).parameters)[: len(parameters)] == parameters, (name, step)


def test_the_config_checks_read_the_record(monkeypatch):
    """A family added to a task's record is accepted for it, with no other table to edit."""
    data = {"task": "translation", "model": {"family": "decoder_lm"}}
    with pytest.raises(ValueError, match="task='translation' needs model.family in \\['encoder_decoder'\\]"):
        validate_config(data)
    widened = dataclasses.replace(TASKS["translation"], families=("encoder_decoder", "decoder_lm"))
    monkeypatch.setitem(TASKS, "translation", widened)
    assert validate_config(data).model.family == "decoder_lm"
