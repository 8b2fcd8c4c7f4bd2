"""One way to run a step: ``run_step`` opens its tracked task, calls its function, records the outcome.

The offline runner (``pipelines/in_process.py``) calls ``run_step`` for each entry of ``STEPS`` in
this process; on a ClearML agent, each pipeline step's script calls ``run_pipeline_step``, which
ClearML copies into the step's task (``pipelines/pipeline.py``).
"""

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from loguru import logger

from src.config import ConfigError
from src.experiment import ExperimentConfig, validate_config
from src.runs import save_traceback, step_cache, update_status
from src.steps.parameters import parameters_digest, step_config, step_parameters
from src.steps.table import STEP, StepSpec
from src.tasks import StepContext

ConfigLike = ExperimentConfig | dict[str, Any] | str


def as_config(config: ConfigLike, source: str = "step parameters", spec: StepSpec | None = None
              ) -> ExperimentConfig:
    """The config of a step: as it is when already validated in this process; validated once when it
    crosses into it (a dict, or the JSON string ClearML passes to an agent's step). With ``spec``,
    ``config`` holds only that step's parameters (``src/steps/parameters.py``)."""
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, str):
        config = json.loads(config)
    if spec is not None:
        return step_config(spec, config, source=source)
    return validate_config(config, source=source)


def run_step(spec: StepSpec, config: ConfigLike, *, offline: bool | None = None,
             config_digest: str | None = None, **inputs: Any) -> dict[str, Any]:
    """Run ``spec``'s function on its parents' outputs inside the step's tracked task; its output.

    ``config`` is the whole config, or (as JSON from a pipeline step's ``kwargs/config``) only the
    step's parameters, which ``config_digest`` then vouches for (``check_pipeline_copy``)."""
    if config_digest is not None:
        check_pipeline_copy(spec.name, config, config_digest)
    # a JSON string is a pipeline step's own parameters; a dict or config is the whole config
    config = as_config(config, source=f"{spec.name} parameters",
                       spec=spec if isinstance(config, str) else None)
    with tracked_step(spec.name, config, spec.task_type, offline=offline) as step:
        return spec.function(step, **inputs)


def run_pipeline_step(step: str, config: str, config_digest: str, **inputs: Any) -> dict[str, Any]:
    """What a ClearML agent runs for every step of the pipeline (ClearML copies this function's source
    into the step's script, which the agent runs from this repository's root at the pipeline's commit).

    ``config`` holds the step's parameters as JSON (``src/steps/parameters.py``), ``config_digest``
    their digest."""
    from src.steps.runner import run_step
    from src.steps.table import STEP

    return run_step(STEP[step], config, offline=False, config_digest=config_digest, **inputs)


def check_pipeline_copy(step: str, config: ConfigLike, digest: str) -> None:
    """Refuse a hand edit of a step task's ``kwargs/config``: the step's task also connects its
    parameters as ``config/...``, and that copy is the one a run reads (README, ClearML section)."""
    if not isinstance(config, str | dict):
        return
    if (actual := parameters_digest(config)) != digest:
        raise ConfigError(
            f"step {step}: kwargs/config was edited (digest {actual}, expected {digest}); it is the "
            "pipeline's copy of the step's parameters, which the step does not read: edit the step's "
            "config/... parameters instead (config/training/lr), or the pipeline's parameters")


@cache
def code_commit() -> str:
    """The commit of this checkout (``+dirty`` with uncommitted changes), or ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def log_overrides(step: str, sent: dict[str, Any], used: dict[str, Any]) -> None:
    """Name each key whose value the task's ``config`` parameters changed from the step's arguments.

    A cloned function step holds the config twice: its arguments (``kwargs/...``, what the pipeline
    passed) and the ``config/...`` section the step connected. On an agent the section wins for every
    key it holds, so an edit of the arguments alone is overridden; this line shows which values ran.
    """
    from src.tracking import changed_leaves

    for key, (old, new) in changed_leaves(sent, used).items():
        logger.info(f"step {step}: {key}={new!r} from the task's 'config' parameters (its arguments said "
                    f"{old!r})")


def dataset_id(cfg: ExperimentConfig) -> str:
    """The data version a step works on, as the ``dataset_id`` user property: the data_prep step's cache
    key (``src/runs/step_cache.py``: the ``task`` and ``data`` sections, the data code, the raw files), so
    runs on the same data share it and any change to the data gives another. A step that publishes or
    reads a ClearML Dataset sets the property again with that dataset's id (properties merge by name)."""
    data_prep = STEP["data_prep"]  # its sections: what a data step's partial config always holds
    return step_cache.step_key("data_prep", step_parameters(data_prep, cfg), data_prep.shaped_by)


@contextmanager
def tracked_step(name: str, config: ConfigLike, task_type: str, *,
                 offline: bool | None = None) -> Iterator[StepContext]:
    """Open the step's task, hand back the config, mark the run folder's ``status.json`` on failure.

    The config the task connects may come back changed: edited in the web UI before an agent ran the
    step, or as strings. Only then is it validated again.
    """
    from src.tracking import start_tracker

    spec = STEP[name]
    cfg = as_config(config)
    run_dir = cfg.run_dir
    tracker = start_tracker(cfg.tracking, step_name=name, task_type=task_type, output_dir=run_dir / name,
                            enabled=cfg.tracking.enabled, offline=offline)
    # only the step's parameters: a data step's task shows (and its clone edits) what shapes its output
    sent = step_parameters(spec, cfg)
    received = tracker.connect_config(sent, name="config")
    if received != sent:
        cfg = step_config(spec, received, source=f"{name} parameters")
        log_overrides(name, sent, step_parameters(spec, cfg))
    family = getattr(cfg.model, "family", None)  # a data step has no model section
    tracker.set_properties(task=cfg.task, **({"family": family} if family else {}), commit=code_commit(),
                           dataset_id=dataset_id(cfg))
    update_status(run_dir, name, "running", task_id=tracker.task_id, offline_folder=tracker.offline_folder)
    logger.info(f"step {name}: task {tracker.task_id}")
    context = StepContext(name, cfg, run_dir, tracker)
    try:
        yield context
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        details: dict[str, Any] = {"reason": reason, "task_id": tracker.task_id}
        if not isinstance(err, Exception):  # a stop request (Ctrl-C, SIGTERM) or exit: not the step's fault
            details["stopped"] = True
        else:
            path = save_traceback(context.step_dir, err)
            # the step's ClearML log
            tracker.log_text(f"step {name} failed:\n{path.read_text(encoding='utf-8')}", console=False)
            details["traceback"] = str(path)
        try:
            session = tracker.close(failed=True, reason=reason)
        except Exception as close_err:  # keep the step's own error; the session stays in the cache
            logger.warning(f"step {name}: closing its ClearML task failed too ({close_err})")
            session = None
        update_status(run_dir, name, "failed", **details, offline_session=str(session) if session else None)
        raise
    session = tracker.close()
    update_status(run_dir, name, "completed", task_id=tracker.task_id,
                  offline_session=str(session) if session else None)
