"""Shared fixtures: tiny model configurations that build and run in milliseconds on CPU."""

import pytest

from src.config.model import ModelConfig


@pytest.fixture
def tiny_config() -> ModelConfig:
    """Two layers per stack, width 32, no dropout: fast and deterministic."""
    return ModelConfig(
        d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0, max_positions=64
    )


@pytest.fixture(params=[False, True], ids=["post-norm", "pre-norm"])
def norm_first(request: pytest.FixtureRequest) -> bool:
    return request.param
