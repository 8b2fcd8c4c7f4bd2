"""Reading back a connected config as the task holds it, edited in the web UI (strings)."""

import re
from pathlib import Path

import pytest

from src.config import ConfigError, config_to_dict
from src.experiment import load_config, validate_config
from src.tracking import changed_leaves, held_values

REPO = Path(__file__).resolve().parents[2]


def _held(config: dict, section: str = "config", **edits: str) -> dict[str, str]:
    """What ``Task.get_parameters()`` returns for ``config`` connected as ``section``, then edited."""
    flat: dict[str, str] = {}

    def walk(value, path):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{path}/{k}")
        elif isinstance(value, dict):
            flat[f"{section}/{path.rsplit('/', 1)[-1]}"] = "{}"  # the SDK drops an empty dict's prefix
        else:
            flat[path] = "" if value is None else str(value)

    for key, value in config.items():
        walk(value, f"{section}/{key}")
    return flat | {f"{section}/{k.replace('.', '/')}": v for k, v in edits.items()}


@pytest.fixture(scope="module")
def tiny() -> dict:
    return config_to_dict(load_config(REPO / "config" / "tiny.yaml"))


def test_edited_strings_validate_to_the_edited_values(tiny):
    held = _held(tiny, **{"training.lr": "0.01", "training.betas": "[0.8, 0.95]", "model.norm_first": "True",
                          "training.grad_clip": "None", "training.max_steps": "7"})
    cfg = validate_config(held_values(tiny, held, "config"), source="train parameters")
    assert (cfg.training.lr, cfg.training.betas, cfg.model.norm_first, cfg.training.grad_clip,
            cfg.training.max_steps) == (0.01, (0.8, 0.95), True, None, 7)
    # every unedited key comes back as it was, None included (the SDK stores None as "")
    assert set(changed_leaves(tiny, config_to_dict(cfg))) == {
        "training.lr", "training.betas", "model.norm_first", "training.grad_clip", "training.max_steps"}


def test_an_empty_clear_of_an_optional_field_is_none_and_of_a_required_one_an_error(tiny):
    cfg = validate_config(held_values(tiny, _held(tiny, **{"training.grad_clip": ""}), "config"))
    assert cfg.training.grad_clip is None
    with pytest.raises(ConfigError, match=r"training\.lr: .*got ''"):
        validate_config(held_values(tiny, _held(tiny, **{"training.lr": ""}), "config"))


@pytest.mark.parametrize(("key", "value"), [("training.lr", "abc"), ("training.max_steps", "6.5"),
                                            ("model.norm_first", "maybe"), ("training.betas", "[0.9,")])
def test_an_edit_that_does_not_parse_fails_naming_the_key(tiny, key, value):
    """The SDK's own cast would log a warning and run the old value for each of these."""
    with pytest.raises(ConfigError, match=re.escape(key) + ": .*got " + re.escape(repr(value))):
        validate_config(held_values(tiny, _held(tiny, **{key: value}), "config"), source="train parameters")


def test_an_empty_dict_survives_and_a_key_the_task_lacks_keeps_the_sent_value():
    sent = {"a": {"opts": {}, "x": 1, "deep": {"inner": {}}}, "missing": [1, 2], "none": None}
    held = {"s/a/x": "2", "s/opts": "{}", "s/inner": "{}", "s/none": "None"}
    assert held_values(sent, held, "s") == {"a": {"opts": {}, "x": "2", "deep": {"inner": {}}},
                                            "missing": [1, 2], "none": "None"}


def test_changed_leaves_names_each_changed_key_with_both_values():
    before = {"training": {"lr": 0.02, "betas": [0.9, 0.98], "grad_clip": 1.0}, "seed": 1}
    after = {"training": {"lr": 0.01, "betas": (0.9, 0.98), "grad_clip": None}, "seed": 1}
    assert changed_leaves(before, after) == {"training.lr": (0.02, 0.01), "training.grad_clip": (1.0, None)}
