"""Frozen, strict configuration sections, one module each; ``src/experiment.py`` composes them into a
run's config (and checks them against the task it names)."""

from src.config.base import ConfigError, FrozenConfig, ResumeError, config_to_dict
from src.config.data import BatchingConfig, DataConfig, TokenizerConfig
from src.config.evaluation import EvaluationConfig
from src.config.model import ModelConfig
from src.config.serving import ServingConfig, load_serving_config
from src.config.tracking import TrackingConfig
from src.config.training import TrainingConfig

__all__ = [
    "BatchingConfig",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "FrozenConfig",
    "ModelConfig",
    "ResumeError",
    "ServingConfig",
    "TokenizerConfig",
    "TrackingConfig",
    "TrainingConfig",
    "config_to_dict",
    "load_serving_config",
]
