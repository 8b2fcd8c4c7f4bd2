"""Frozen, strict configuration models; one module per section, composed in ``experiment``."""

from src.config.base import ConfigError, FrozenConfig, config_to_dict
from src.config.data import BatchingConfig, DataConfig, TokenizerConfig
from src.config.evaluation import EvaluationConfig
from src.config.experiment import ExperimentConfig, apply_overrides, load_config, validate_config
from src.config.model import ModelConfig
from src.config.serving import ServingConfig, load_serving_config
from src.config.tracking import TrackingConfig
from src.config.training import TrainingConfig

__all__ = [
    "BatchingConfig",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FrozenConfig",
    "ModelConfig",
    "ServingConfig",
    "TokenizerConfig",
    "TrackingConfig",
    "TrainingConfig",
    "apply_overrides",
    "config_to_dict",
    "load_serving_config",
    "load_config",
    "validate_config",
]
