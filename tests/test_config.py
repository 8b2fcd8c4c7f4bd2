"""The configuration contract: strict keys, type-checked dotted overrides, ClearML string round trip."""

import json

import pytest

from src.config import ConfigError, config_to_dict
from src.experiment import ExperimentConfig, load_config, validate_config
from src.config.files import CONFIG_DIR


# config/ also holds the server's settings and the sweep's search space, each with its own schema
# and tests (tests/serving/test_serving_config.py, tests/tuning/test_space.py)
NOT_EXPERIMENTS = {"serving.yaml", "sweep_space.yaml"}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if p.name not in NOT_EXPERIMENTS))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIG_DIR / name)
    assert isinstance(cfg, ExperimentConfig)


def test_default_config_is_found_without_arguments():
    assert load_config().run_name == "default"


def test_dotted_overrides_are_typed(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    cfg = load_config(path, ["model.d_model=512", "model.n_heads=8", "training.betas=[0.8, 0.9]",
                             "model.norm_first=true"])
    assert (cfg.model.d_model, cfg.model.n_heads, cfg.training.betas, cfg.model.norm_first) == (
        512, 8, (0.8, 0.9), True)


def test_configs_are_frozen():
    cfg = ExperimentConfig()
    with pytest.raises(Exception):
        cfg.model.d_model = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.dmodel=3", "model.dmodel: unknown key (allowed: "),
        ("bogus.key=1", "bogus: unknown key"),
        ("model.d_model=abc", "model.d_model: Input should be a valid integer"),
        ("training.lr=-1", "training.lr: Input should be greater than 0"),
        ("model.activation=tanh",
         "model.activation: Input should be 'relu', 'gelu', 'gelu_tanh' or 'swiglu'"),
    ],
)
def test_bad_overrides_name_the_key_and_value(tmp_path, override, expected):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert expected in str(err.value)


def test_unknown_key_error_lists_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG_DIR / "tiny.yaml", ["model.dmodel=3"])
    assert "d_model" in str(err.value) and "n_heads" in str(err.value)


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match="d_model=250 is not divisible by n_heads=8"):
        validate_config({"model": {"d_model": 250, "n_heads": 8}})


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(CONFIG_DIR / "tiny.yaml", ["model.d_model"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_stringified_parameters_round_trip():
    """ClearML hands every parameter back as a string (clearml #1668); validation restores types."""
    original = load_config(CONFIG_DIR / "default_config.yaml")

    def stringify(node):
        return {k: stringify(v) for k, v in node.items()} if isinstance(node, dict) else str(node)

    restored = validate_config(stringify(config_to_dict(original)))
    assert restored == original


def clearml_strings(node):
    """Every leaf as the ClearML server holds it: a string, None as "" (as the SDK stores it)."""
    if isinstance(node, dict):
        return {k: clearml_strings(v) for k, v in node.items()}
    return "" if node is None else str(node)


def test_a_bad_stringified_value_is_reported_alone():
    """Every list of the config arrives as a string ("[0.9, 0.98]") and fails the first validation; after
    the re-parse only the bad key remains, and only it is reported."""
    data = clearml_strings(config_to_dict(load_config(CONFIG_DIR / "tiny.yaml")))
    data["training"]["lr"] = "abc"
    with pytest.raises(ConfigError) as err:
        validate_config(data, source="train parameters")
    assert str(err.value) == ("invalid train parameters:\n  training.lr: Input should be a valid number, "
                              "unable to parse string as a number (got 'abc')")


def test_an_error_inside_a_parsed_string_shows_the_string_as_given():
    data = clearml_strings(config_to_dict(load_config(CONFIG_DIR / "tiny.yaml")))
    data["training"]["betas"] = "[0.9, abc]"
    with pytest.raises(ConfigError) as err:
        validate_config(data)
    (line,) = str(err.value).splitlines()[1:]
    assert line.startswith("  training.betas.1: Input should be a valid number")
    assert line.endswith("(got '[0.9, abc]')")


def test_json_and_yaml_load_the_same(tmp_path):
    data = {"model": {"d_model": 64, "n_heads": 4}, "training": {"max_steps": 7}}
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "a.yaml").write_text("model:\n  d_model: 64\n  n_heads: 4\ntraining:\n  max_steps: 7\n")
    assert load_config(tmp_path / "a.json") == load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(("overrides", "message"), [
    (["task=classification"],
     "task='classification' needs model.family in ['encoder_classifier', 'gru_classifier', "
                              "'lstm_classifier', 'rnn_classifier'], got 'encoder_decoder'"),
    (["model.family=lstm_classifier"], "task='translation' needs model.family in ['encoder_decoder']"),
    (["task=classification", "model.family=encoder_classifier"],
     "task='classification' reads data.source in ['clearml', 'hf', 'imdb', 'listops', 'local'], got 'ding'"),
    (["data.source=imdb"],
     "task='translation' reads data.source in ['clearml', 'ding', 'hf', 'local'], got 'imdb'"),
    (["task=language_modeling", "model.family=decoder_lm", "data.source=prose"],
     "task='language_modeling' batches fixed-size items: set batching.batch_size"),
    (["task=image_classification", "model.family=vit", "data.source=prose", "batching.batch_size=8"],
     "task='image_classification' reads data.source in ['fashion_mnist'], got 'prose'"),
    (["tokenizer.kind=char"], "tokenizer.kind='char' is for language modelling and text classification, not "
                              "task='translation' (it takes tokenizer.kind in ['bpe'])"),
    (["tokenizer.kind=byte"], "tokenizer.kind='byte' is for masked-LM pretraining and text classification, "
                              "not task='translation'"),
    (["batching.batch_size=32"],
     "task='translation' batches by tokens (batching.max_tokens); batching.batch_size is"),
    (["batching.block_size=32"],
     "batching.block_size is the language model's window; task='translation' has none"),
    (["task=language_modeling", "model.family=decoder_lm", "data.source=prose", "batching.batch_size=8",
      "batching.block_size=512", "model.max_positions=256"],
     "batching.block_size=512 exceeds model.max_positions=256"),
    (["task=image_classification", "model.family=vit", "data.source=fashion_mnist", "batching.batch_size=8",
      "model.image_size=30"], "image_size=30 is not divisible by patch_size=4"),
    (["data.valid_count=100"], "valid_count and test_count are set together or not at all"),
])
def test_the_model_family_and_data_must_fit_the_task(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("config/tiny.yaml", overrides)
    # one rule, not the whole config dumped
    assert message in str(err.value) and "(got {" not in str(err.value)


@pytest.mark.parametrize(("config", "overrides", "message"), [
    ("config/lm_tiny.yaml", ["tokenizer.kind=byte"],
     "tokenizer.kind='byte' is for masked-LM pretraining and text classification, not "
     "task='language_modeling'"),
    ("config/lm_tiny.yaml", ["tokenizer.kind=word"], "it takes tokenizer.kind in ['bpe', 'char']"),
    ("config/imdb_tiny.yaml", ["tokenizer.max_tokens_per_sentence=200"],
     "tokenizer.max_tokens_per_sentence=200 exceeds model.max_positions=128"),
    ("config/listops_tiny.yaml", ["tokenizer.max_tokens_per_sentence=100"],
     "tokenizer.max_tokens_per_sentence=100 would cut ListOps expressions, whose value needs every token: "
     "[CLS] + up to 100 words (data.listops_max_length=100); expected >= 101"),
    ("config/listops_tiny.yaml", ["data.listops_parentheses=true", "data.max_chars=1000"],
     "[CLS] + up to 298 words (data.listops_max_length=100, with parentheses); expected >= 299"),
    ("config/listops_tiny.yaml", ["data.max_chars=300"],
     "max_chars=300 would drop ListOps expressions as too_long"),
])
def test_tokenizer_kinds_and_text_lengths_must_fit_the_task_and_model(config, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(config, overrides)
    assert message in str(err.value)


@pytest.mark.parametrize("kind", ["bpe", "byte", "word", "char"])
def test_classification_takes_every_text_tokenizer(kind):
    assert load_config("config/imdb_tiny.yaml", [f"tokenizer.kind={kind}"]).tokenizer.kind == kind


@pytest.mark.parametrize("family", ["imdb_long", "listops"])
def test_the_long_document_configs_differ_only_in_attention(family):
    """full / sliding / longformer are one experiment: the same data, tokens, sizes, steps and seeds."""
    configs = {name: config_to_dict(load_config(f"config/{family}_{name}.yaml"))
               for name in ("full", "sliding", "longformer")}
    attention = {name: {key: c["model"].pop(key) for key in ("attention", "window", "pooling")}
                 for name, c in configs.items()}
    # IMDB pools the mean in all three (a byte-level model learns faster from it); ListOps needs [CLS]
    # where a token sees the whole expression, so the sliding window alone pools the mean there
    pooling = {"imdb_long": ("mean", "mean", "mean"), "listops": ("cls", "mean", "cls")}[family]
    assert attention == {"full": {"attention": "full", "window": None, "pooling": pooling[0]},
                         "sliding": {"attention": "sliding_window", "window": 128, "pooling": pooling[1]},
                         "longformer": {"attention": "longformer", "window": 128, "pooling": pooling[2]}}
    for name, c in configs.items():  # the names say which run is which
        assert c.pop("run_name") == c["tracking"].pop("task_name") == c["tracking"].pop("model_name") \
            == f"{family.replace('_', '-')}-{name}"
    assert configs["full"] == configs["sliding"] == configs["longformer"]
    assert configs["full"]["tokenizer"]["kind"] == {"imdb_long": "byte", "listops": "word"}[family]
