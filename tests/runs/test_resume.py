"""Guarded resume: shape, data and vocabulary changes are refused in one line; training changes pass."""

import pytest

from src.config import load_config
from src.runs import ResumeError, check_resume, config_differences

TINY = "config/tiny.yaml"


def test_a_changed_model_width_is_refused_in_one_line_naming_the_key():
    with pytest.raises(ResumeError) as err:
        check_resume(load_config(TINY), load_config(TINY, ["model.d_model=64"]), run="runs/tiny-1")
    message = str(err.value)
    assert "\n" not in message
    assert "checkpoint has model.d_model=32, config asks 64" in message


@pytest.mark.parametrize("override", ["tokenizer.vocab_size=300", "data.max_rows=500"])
def test_a_changed_vocabulary_or_corpus_is_refused(override):
    key, value = override.split("=")
    with pytest.raises(ResumeError, match=rf"used {key}=\d+, config asks {value}"):
        check_resume(load_config(TINY), load_config(TINY, [override]), run="r")


def test_training_only_changes_are_allowed_and_returned():
    changes = check_resume(load_config(TINY), load_config(TINY, ["training.max_steps=60", "training.lr=0.001",
                                                                 "model.dropout=0.2", "run_id=other"]), run="r")
    assert changes == {"training.max_steps": (30, 60), "training.lr": (0.003, 0.001), "model.dropout": (0.1, 0.2)}


def test_config_differences_are_flat_dotted_keys():
    assert config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == {
        "a.c": (2, 3), "d": (None, 4)}


def test_the_split_size_check_may_change_on_resume():
    changes = check_resume(load_config(TINY), load_config(TINY, ["data.min_eval_pairs=2"]), run="r")
    assert changes == {"data.min_eval_pairs": (8, 2)}
