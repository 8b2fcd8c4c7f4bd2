"""Guarded resume: shape, data and vocabulary changes are refused in one line; training changes pass."""

import pytest

from src.experiment import load_config
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
                                                                 "model.dropout=0.2", "run_id=other"]),
                           run="r")
    assert changes == {"training.max_steps": (30, 60), "training.lr": (0.003, 0.001),
                       "model.dropout": (0.1, 0.2)}


def test_config_differences_are_flat_dotted_keys():
    assert config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == {
        "a.c": (2, 3), "d": (None, 4)}


def test_the_split_size_check_may_change_on_resume():
    changes = check_resume(load_config(TINY), load_config(TINY, ["data.min_eval_pairs=2"]), run="r")
    assert changes == {"data.min_eval_pairs": (8, 2)}


def test_the_kernel_choice_may_change_but_the_task_may_not():
    lstm = ["task=classification", "data.source=imdb", "model.family=lstm_classifier"]
    assert check_resume(load_config(TINY, lstm), load_config(TINY, [*lstm, "model.rnn_fast=false"]),
                        run="r") == {
        "model.rnn_fast": (True, False)}
    with pytest.raises(ResumeError,
                       match="it was trained for task='translation', config asks 'classification'"):
        check_resume(load_config(TINY), load_config(TINY, ["task=classification", "data.source=imdb",
                                                           "model.family=encoder_classifier"]), run="r")


def test_a_checkpoint_written_before_the_model_families_resumes():
    """Its stored model config lacks family/pooling/rnn_* keys: their defaults are what it was."""
    from src.config import config_to_dict
    from src.training.checkpoint_format import check_same_shape

    requested = config_to_dict(load_config(TINY).model)
    old = {k: v for k, v in requested.items() if k not in ("family", "pooling", "rnn_bidirectional",
                                                           "rnn_fast")}
    check_same_shape(old, requested)  # no error
    with pytest.raises(ResumeError, match="checkpoint has model.d_model=32, config asks 64"):
        check_same_shape(old, requested | {"d_model": 64})


def test_image_augmentation_may_change_but_the_language_model_window_may_not():
    vit, lm = "config/vit_tiny.yaml", "config/lm_tiny.yaml"
    assert check_resume(load_config(vit), load_config(vit, ["data.augmentation=none"]), run="r") == {
        "data.augmentation": ("crop_flip", "none")}
    with pytest.raises(ResumeError,
                       match="its training windows were cut at batching.block_size=32, config asks 16"):
        check_resume(load_config(lm), load_config(lm, ["batching.block_size=16"]), run="r")
    with pytest.raises(ResumeError, match="used tokenizer.kind='char', config asks 'bpe'"):
        check_resume(load_config(lm), load_config(lm, ["tokenizer.kind=bpe"]), run="r")


def test_a_changed_attention_pattern_is_refused_as_a_new_experiment():
    base = load_config("config/imdb_long_tiny.yaml")
    with pytest.raises(ResumeError,
                       match="model.window=8, config asks 16 .*attention pattern needs a new run"):
        check_resume(base, load_config("config/imdb_long_tiny.yaml", ["model.window=16"]), run="r")
