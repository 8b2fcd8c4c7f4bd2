"""The step cache's key: the tokenize step of a run that starts from pretrained weights (their tokenizer) is
never the tokenize step of a run with the same data and tokenizer sections that trains its own."""

from src.config.base import config_to_dict
from src.experiment import load_config
from src.runs.step_cache import step_key
from src.steps.table import STEPS


def test_the_tokenize_key_changes_with_model_init_from_only():
    shaped_by = next(spec.shaped_by for spec in STEPS if spec.name == "tokenize")
    key = {
        source: step_key(
            "tokenize", config_to_dict(load_config("config/imdb_tiny.yaml", overrides)), shaped_by
        )
        for source, overrides in {
            "none": [],
            "bert": ["model.init_from=/models/bert"],
            "other layers": ["model.n_encoder_layers=4"],
        }.items()
    }
    assert key["bert"] != key["none"]
    assert key["other layers"] == key["none"]  # a model key that does not touch tokenization
