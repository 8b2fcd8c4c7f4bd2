"""Experiment tracking settings (ClearML)."""

from pydantic import PositiveInt

from src.config.base import FrozenConfig


class TrackingConfig(FrozenConfig):
    """What is recorded, and where it goes in ClearML."""

    enabled: bool = True
    project_name: str = "stepwise-transformers"
    task_name: str = "transformer-de-en"
    model_name: str = "transformer-de-en"
    heatmap_every: PositiveInt = 200  # steps between attention heatmaps of the probe batch
    grad_norm_every: PositiveInt = 10  # steps between per-layer gradient norms
    probe_sentences: PositiveInt = 2
    tags: tuple[str, ...] = ()
