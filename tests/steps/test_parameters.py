"""Each step's parameters (what ClearML's step cache hashes) and the pipeline's editable parameters.

The agents' side of both (cached steps reused, edits taking effect) is in
tests/pipelines/test_pipeline_parameters_server.py; these are the fast properties underneath.
"""

import json

import pytest

from pipelines.pipeline import describe_pipeline, step_kwargs
from src.config import ConfigError
from src.experiment import load_config
from src.steps import STEP
from src.steps.parameters import check_pipeline_parameters, pipeline_parameters, step_config, step_parameters
from src.steps.runner import run_step

CONFIGS = ("config/tiny.yaml", "config/imdb_tiny.yaml", "config/lm_tiny.yaml", "config/vit_tiny.yaml")


def as_the_ui_stores(value) -> str:
    """What ClearML's ``Task._set_parameters`` stores for a value (clearml 2.1.12's ``stringify``)."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


def kwargs_after(*overrides: str) -> dict[str, dict[str, str]]:
    cfg = load_config("config/tiny.yaml", list(overrides))
    return {name: step_kwargs(name, cfg) for name in STEP}


def test_a_data_steps_arguments_change_only_with_the_sections_that_shape_its_output():
    base = kwargs_after()
    # neither training, evaluation, the run's name nor ClearML naming reaches the data steps' cache keys
    for override in ("training.lr=0.002", "evaluation.beam_size=3", "run_name=other",
                     "tracking.task_name=renamed", "tracking.tags=[a]", "batching.max_tokens=999"):
        changed = kwargs_after(override)
        assert changed["data_prep"] == base["data_prep"], override
        assert changed["tokenize"] == base["tokenize"], override
        assert changed["train"] != base["train"], override  # train sees every key
    vocab = kwargs_after("tokenizer.vocab_size=400")
    assert vocab["data_prep"] == base["data_prep"]
    assert vocab["tokenize"] != base["tokenize"]
    data = kwargs_after("data.valid_fraction=0.2")
    assert data["data_prep"] != base["data_prep"] and data["tokenize"] != base["tokenize"]
    assert set(json.loads(base["data_prep"]["config"])) == {"task", "data"}
    assert json.loads(base["tokenize"]["config"])["model"] == {
        "init_from": None, "in_channels": 1, "image_size": 28, "patch_size": 4}


@pytest.mark.parametrize("path", CONFIGS)
def test_a_data_step_cannot_read_a_key_outside_its_parameters(path):
    cfg = load_config(path)
    tokenize = step_config(STEP["tokenize"], step_parameters(STEP["tokenize"], cfg), "tokenize parameters")
    assert (tokenize.task, tokenize.data, tokenize.tokenizer) == (cfg.task, cfg.data, cfg.tokenizer)
    assert tokenize.model.image_size == cfg.model.image_size  # a key of a partly passed section
    with pytest.raises(AttributeError, match=r"step tokenize read model\.d_model, which is not among its "
                                             r"parameters .* shaped_by in src/steps/table\.py"):
        _ = tokenize.model.d_model
    data_prep = step_config(STEP["data_prep"], step_parameters(STEP["data_prep"], cfg), "data_prep")
    with pytest.raises(AttributeError, match=r"step data_prep read training\.seed"):
        _ = data_prep.training.seed
    with pytest.raises(AttributeError, match=r"step data_prep read tokenizer\.vocab_size"):
        _ = data_prep.tokenizer.vocab_size


def test_a_step_refuses_parameters_it_does_not_take():
    cfg = load_config("config/tiny.yaml")
    extra = step_parameters(STEP["data_prep"], cfg) | {"training": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="training: Extra inputs are not permitted|training: unknown key"):
        step_config(STEP["data_prep"], extra, "data_prep parameters")


@pytest.mark.parametrize("path", CONFIGS)
def test_pipeline_parameters_come_back_from_the_strings_the_ui_stores(path):
    cfg = load_config(path)
    stored = {name: as_the_ui_stores(value) for name, value in pipeline_parameters(cfg).items()}
    assert check_pipeline_parameters(stored, cfg) == cfg


def test_edited_parameters_take_their_types():
    cfg = load_config("config/tiny.yaml")
    edited = check_pipeline_parameters({"training/lr": "1e-4", "training/betas": "[0.8, 0.9]",
                                        "training/compile": "True", "model/final_norm": "None",
                                        "tracking/tags": '["a", "b"]', "data/max_rows": ""}, cfg)
    assert (edited.training.lr, edited.training.betas, edited.training.compile) == (1e-4, (0.8, 0.9), True)
    assert (edited.model.final_norm, edited.tracking.tags, edited.data.max_rows) == (None, ("a", "b"), None)


@pytest.mark.parametrize("edit, message", [
    ({"training/lr": "abc"},
     "invalid pipeline parameters: training.lr: Input should be a valid number, unable to parse string as a "
     "number (got 'abc')"),
    ({"training/lrr": "0.1"}, "invalid pipeline parameters: training.lrr: unknown key (allowed: betas,"),
    ({"model/d_model": "33"}, "invalid pipeline parameters: model: d_model=33 is not divisible by n_heads=2"),
])
def test_a_bad_edit_fails_in_one_line_naming_the_key(edit, message):
    with pytest.raises(ConfigError) as err:
        check_pipeline_parameters(edit, load_config("config/tiny.yaml"))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_bad_edit_among_the_servers_strings_names_only_the_bad_key():
    """The controller reads back every parameter as the server holds it, a string ("[0.9, 0.98]", "" for
    None): the lists that validate once parsed do not show beside the bad key."""
    cfg = load_config("config/tiny.yaml")
    held = {name: "" if value is None else str(value) for name, value in pipeline_parameters(cfg).items()}
    assert check_pipeline_parameters(held, cfg) == cfg  # the strings give back the same config
    with pytest.raises(ConfigError) as err:
        check_pipeline_parameters(held | {"training/lr": "abc"}, cfg)
    assert str(err.value) == ("invalid pipeline parameters: training.lr: Input should be a valid number, "
                              "unable to parse string as a number (got 'abc')")


def test_a_hand_edit_of_the_pipelines_copy_is_refused_before_the_step_runs(tmp_path):
    cfg = load_config("config/tiny.yaml", [f"output_dir={tmp_path}"])
    kwargs = step_kwargs("data_prep", cfg)
    edited = json.loads(kwargs["config"])
    edited["data"]["valid_fraction"] = 0.3
    with pytest.raises(ConfigError, match=r"step data_prep: kwargs/config was edited .* edit the step's "
                                          r"config/\.\.\. parameters instead"):
        run_step(STEP["data_prep"], json.dumps(edited), config_digest=kwargs["config_digest"], offline=True)
    assert not any(tmp_path.iterdir())  # nothing ran


def test_dry_run_lists_each_steps_parameters_and_every_typed_pipeline_parameter():
    cfg = load_config("config/tiny.yaml")
    text = describe_pipeline(cfg, queue=None)
    assert ("  data_prep [cached]\n      queue 'cpu', docker 'python:3.11-slim'\n"
            "      parameters: task, data\n") in text
    assert "      parameters: task, data, tokenizer, model.init_from, model.in_channels" in text
    lines = text.split("pipeline parameters (one per key; edit them in the web UI's New Run dialog):\n")[1]
    assert len(lines.splitlines()) == len(pipeline_parameters(cfg))
    for line in ("  training/lr (float) = 0.003", "  run_id (str | None) = None",
                 "  model/d_model (int) = 32", "  training/betas (list) = [0.9, 0.98]"):
        assert line in lines.splitlines(), line
