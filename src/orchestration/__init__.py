"""ClearML orchestration: the pipeline controller, the agents' queues, the model registry, the
hyperparameter sweep's optimizer and multi-node training.

With ``src.tracking`` (the adapter that records one step as one task), the only package that
imports clearml, and only on use: importing this surface needs neither clearml nor a server.
Offline mode covers tracking, not this: everything here but the pipeline's construction and the
local sweep's trackers needs a server (``check_server`` says within seconds what to fix).
"""

from typing import TYPE_CHECKING

from src.orchestration.model_store import STAGES, ModelNotFoundError, RegisteredModel, fetch_model
from src.orchestration.multi_node import launch_nodes
from src.orchestration.pipeline import (
    STEP_REPO_ENV,
    describe_pipeline_parameters,
    edited_pipeline_parameters,
    init_controller_task,
    new_pipeline_controller,
    pipeline_web_url,
    step_checkout,
)
from src.orchestration.registry import best_value, published_model_metric
from src.orchestration.server import (
    ServerError,
    ServerInfo,
    ServerMisconfiguredError,
    ServerUnreachableError,
    check_server,
    ensure_queues,
)
from src.orchestration.sweep import (
    OptimizerRun,
    SearchParameter,
    clearml_parameters,
    join_trial_threads,
    refuse_log_integers,
    require_server,
    run_clearml_optimizer,
    start_sweep_tracker,
    sweep_project,
    task_parameter_name,
)

if TYPE_CHECKING:
    from src.experiment import ExperimentConfig



def resolve_sources(cfg: "ExperimentConfig", fetch: bool = True) -> "ExperimentConfig":
    """``model.init_from`` and ``training.distill_from`` resolved before any step, the model given the
    source's sizes (``init_source.py``); ``fetch=False`` (``train --queue``) leaves a registry reference to
    the steps on the agent. Imported on use, since it reads the experiment config, which imports torch."""
    from src.orchestration.init_source import resolve_distill_from, resolve_init_from

    return resolve_distill_from(resolve_init_from(cfg, fetch), fetch)


def resolve_in_step(cfg: "ExperimentConfig") -> "ExperimentConfig":
    """The train step's sources resolved where it runs (``init_source.py``); imported on use, as
    ``resolve_sources``."""
    from src.orchestration.init_source import resolve_in_step as resolve

    return resolve(cfg)


def source_here(key: str, source: str, output_dir: str) -> str:
    """A source as a path where the step runs, a registry model downloaded (``init_source.py``); imported on
    use, as ``resolve_sources``."""
    from src.orchestration.init_source import source_here as locate_here

    return locate_here(key, source, output_dir)


def init_model_source(init_from: str) -> dict[str, str] | None:
    """The ClearML model a resolved ``model.init_from`` came from, for the train task's input model
    (``init_source.py``); imported on use, as ``resolve_sources``."""
    from src.orchestration.init_source import init_model_source as source_of

    return source_of(init_from)


__all__ = [
    "STAGES",
    "STEP_REPO_ENV",
    "ModelNotFoundError",
    "OptimizerRun",
    "RegisteredModel",
    "SearchParameter",
    "ServerError",
    "ServerInfo",
    "ServerMisconfiguredError",
    "ServerUnreachableError",
    "best_value",
    "check_server",
    "clearml_parameters",
    "describe_pipeline_parameters",
    "edited_pipeline_parameters",
    "ensure_queues",
    "fetch_model",
    "init_controller_task",
    "init_model_source",
    "join_trial_threads",
    "launch_nodes",
    "new_pipeline_controller",
    "resolve_in_step",
    "resolve_sources",
    "pipeline_web_url",
    "published_model_metric",
    "source_here",
    "refuse_log_integers",
    "require_server",
    "run_clearml_optimizer",
    "start_sweep_tracker",
    "step_checkout",
    "sweep_project",
    "task_parameter_name",
]
