"""The search space: keys and values checked against the config schema, draws that stay in range."""

import optuna
import pytest

from src.config import ConfigError
from src.experiment import load_config
from src.tuning.space import DEFAULT_SPACE, apply_params, describe_field, load_space, parse_space


@pytest.fixture(scope="module")
def tiny():
    return load_config("config/tiny.yaml")


def test_default_space_file_parses_against_the_shipped_configs(tiny):
    space = load_space(None, tiny)
    assert space.keys == ["training.lr", "model.dropout", "model.n_heads", "training.warmup_steps"]
    assert space.params["training.lr"].log and space.params["training.warmup_steps"].integer
    assert load_space(DEFAULT_SPACE, load_config()).keys == space.keys  # the default config too


def test_unknown_key_names_the_key_and_the_allowed_fields(tiny):
    with pytest.raises(ConfigError) as err:
        parse_space({"training.lrr": {"low": 1e-4, "high": 1e-3}}, tiny)
    assert "training.lrr" in str(err.value) and "'lrr'" in str(err.value) and "lr," in str(err.value)
    with pytest.raises(ConfigError, match="'trainin' is not a key of the config"):
        parse_space({"trainin.lr": {"low": 1e-4, "high": 1e-3}}, tiny)
    with pytest.raises(ConfigError, match="is a section, not a value"):
        parse_space({"training": {"low": 1e-4, "high": 1e-3}}, tiny)


def test_value_the_schema_rejects_names_key_and_expected_type(tiny):
    with pytest.raises(ConfigError) as err:
        parse_space({"model.dropout": {"low": 0.0, "high": 1.5}}, tiny)
    message = str(err.value)
    assert "model.dropout=1.5" in message and "expected float, >= 0.0, < 1.0" in message
    with pytest.raises(ConfigError, match=r"(?s)training.lr=-0.1 .*expected float, > 0"):
        parse_space({"training.lr": {"choices": [1e-3, -0.1]}}, tiny)
    # a rule across keys: tiny has d_model 32, so 3 heads do not divide it
    with pytest.raises(ConfigError, match=r"(?s)model.n_heads=3 .*not divisible"):
        parse_space({"model.n_heads": {"choices": [2, 3]}}, tiny)
    with pytest.raises(ConfigError,
                       match=r"(?s)training.device=.tpu. .*expected Literal\['auto', 'cpu', 'cuda'\]"):
        parse_space({"training.device": {"choices": ["cpu", "tpu"]}}, tiny)


def test_malformed_ranges_are_clear_errors(tiny):
    cases = {
        "low=0.01 is above high=0.001": {"low": 1e-2, "high": 1e-3},
        "expected both low and high": {"low": 1e-3},
        "either choices or low/high": {"low": 1e-3, "high": 1e-2, "choices": [1e-3]},
        "a log range needs low > 0": {"low": 0.0, "high": 0.2, "log": True},
        "choices is empty": {"choices": []},
        "Extra inputs are not permitted": {"low": 1e-3, "high": 1e-2, "lg": True},
    }
    for message, spec in cases.items():
        with pytest.raises(ConfigError, match=message):
            parse_space({"training.lr": spec}, tiny)
    with pytest.raises(ConfigError, match=r"training.warmup_steps is an int .*add `int: true`"):
        parse_space({"training.warmup_steps": {"low": 10, "high": 200}}, tiny)
    with pytest.raises(ConfigError, match="non-empty mapping"):
        parse_space([], tiny)


def test_draws_stay_in_range_and_make_valid_configs(tiny):
    space = parse_space({"training.lr": {"low": 1e-4, "high": 3e-3, "log": True},
                         "model.dropout": {"low": 0.0, "high": 0.3},
                         "model.n_heads": {"choices": [2, 4]},
                         "training.warmup_steps": {"low": 10, "high": 200, "int": True, "step": 10}}, tiny)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(20):
        params = space.suggest(study.ask())
        assert 1e-4 <= params["training.lr"] <= 3e-3 and 0.0 <= params["model.dropout"] <= 0.3
        assert params["model.n_heads"] in (2, 4)
        assert isinstance(params["training.warmup_steps"], int) and params["training.warmup_steps"] % 10 == 0
        cfg = apply_params(tiny, params)
        assert (cfg.training.lr, cfg.model.n_heads) == (params["training.lr"], params["model.n_heads"])
        assert cfg.model.d_model == tiny.model.d_model  # untouched keys stay as in the base config


def test_base_values_only_when_inside_the_space(tiny):
    inside = parse_space({"training.lr": {"choices": [3e-3, 1e-7]}, "model.n_heads": {"choices": [2, 4]}},
                         tiny)
    assert inside.base_values(tiny) == {"training.lr": 3e-3, "model.n_heads": 2}
    outside = parse_space({"training.warmup_steps": {"low": 10, "high": 200, "int": True}}, tiny)
    assert outside.base_values(tiny) is None  # tiny warms up for 5 steps


def test_describe_field_reads_the_schema():
    assert describe_field("training.lr") == "float, > 0"
    assert describe_field("model.n_heads") == "int, > 0"
    assert describe_field("training.max_minutes").startswith("Optional[")
