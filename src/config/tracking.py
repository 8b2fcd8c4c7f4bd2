"""Experiment tracking settings (ClearML)."""

from pydantic import PositiveFloat, PositiveInt

from src.config.base import FrozenConfig


class TrackingConfig(FrozenConfig):
    """What is recorded, and where it goes in ClearML.

    Each pipeline step becomes one ClearML task named ``"{task_name}-{step}"`` in ``project_name``.
    """

    enabled: bool = True  # False: NullTracker, nothing goes to ClearML (overhead measurements, tests)
    # None: offline unless ClearML is configured (CLEARML_API_HOST, CLEARML_CONFIG_FILE or ~/clearml.conf)
    offline: bool | None = None
    project_name: str = "stepwise-transformers"
    task_name: str = "transformer-de-en"
    model_name: str = "transformer-de-en"
    tags: tuple[str, ...] = ()
    output_uri: str | None = None  # online upload destination for models/artifacts; None: the files server
    server_timeout_s: PositiveFloat = 5.0  # TCP check of the API server before an online Task.init
    save_plots: bool = True  # also write every debug image as PNG under the step's output folder
    heatmap_every: PositiveInt = 200  # steps between attention heatmaps of the probe batch
    grad_norm_every: PositiveInt = 10  # steps between per-layer gradient norms
    resource_every: PositiveInt = 50  # steps between CPU/GPU memory and utilisation scalars
    probe_sentences: PositiveInt = 2
