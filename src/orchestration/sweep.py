"""The tasks of a hyperparameter search: trial and parent tasks offline, ClearML's optimizer on a server.

Every task of a sweep lives in the sub-project ``<project>/sweep-<study>``. Locally each trial is
its own task (an offline session without a server) and the parent task, opened after the trials
(ClearML allows one running task per process), holds the study and the trials table. With a
server, ``HyperParameterOptimizer`` with ``OptimizerOptuna`` clones the train step's task once per
trial, overrides its ``config/<section>/<key>`` hyperparameters and enqueues the clone; it needs
a server for ``Task.get_task``/``clone``/``enqueue`` and cannot run offline.
"""

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from src.config.tracking import TrackingConfig
from src.orchestration.server import ServerError
from src.tracking import NullTracker, Tracker, resolve_offline

CONFIG_SECTION = "config"  # the train step connects its config under this name (src/steps/runner.py)


def sweep_project(project_name: str, study: str) -> str:
    return f"{project_name}/sweep-{study}"


def start_sweep_tracker(cfg: TrackingConfig, *, study: str, task_name: str, task_type: str, output_dir,
                        offline: bool | None = None) -> Tracker | NullTracker:
    """A task of the sweep ``study`` (a trial, or the parent with ``task_type="optimizer"``)."""
    if not cfg.enabled:
        return NullTracker(output_dir=output_dir, save_plots=cfg.save_plots)
    return Tracker.start(
        project=sweep_project(cfg.project_name, study), task_name=task_name, task_type=task_type,
        offline=cfg.offline if offline is None else offline, tags=(*cfg.tags, "sweep", f"sweep-{study}"),
        output_dir=output_dir, output_uri=cfg.output_uri, server_timeout_s=cfg.server_timeout_s,
        save_plots=cfg.save_plots,
    )


@dataclass(frozen=True)
class SearchParameter:
    """One searched hyperparameter of the base task: ``name`` as the task holds it
    (``config/training/lr``)."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None


def task_parameter_name(key: str) -> str:
    """A dotted config key as the train step's task holds it: ``training.lr`` -> ``config/training/lr``."""
    return "/".join([CONFIG_SECTION, *key.split(".")])


def refuse_log_integers(params: Sequence[SearchParameter]) -> None:
    """Refuse ``{int: true, log: true}`` ranges on the queue path: ClearML has no log-integer range.

    Its ``LogUniformParameterRange`` draws floats (``10**x``), which an int config field then rejects
    in every trial; a log-int key must be searched locally (without ``--queue``) or given as choices.
    """
    bad = [p.name for p in params if p.log and p.integer and p.choices is None]
    if bad:
        raise ValueError(f"sweep --queue cannot search {', '.join(bad)} as a log-scaled int: ClearML's "
                         "optimizer has no log-int range (expected `int: true` without `log: true`, or "
                         "`choices: [...]`, or run the sweep without --queue)")


def clearml_parameters(params: Sequence[SearchParameter]) -> list:
    """ClearML's parameter ranges for ``params`` (OptimizerOptuna turns them back into optuna draws)."""
    refuse_log_integers(params)
    from clearml.automation import (
        DiscreteParameterRange,
        LogUniformParameterRange,
        UniformIntegerParameterRange,
        UniformParameterRange,
    )

    ranges = []
    for p in params:
        if p.choices is not None:
            ranges.append(DiscreteParameterRange(p.name, values=list(p.choices)))
        elif p.log:  # exponents of 10: OptimizerOptuna draws 10**low .. 10**high on a log scale
            ranges.append(LogUniformParameterRange(p.name, min_value=math.log10(p.low),
                                                   max_value=math.log10(p.high)))
        elif p.integer:
            ranges.append(UniformIntegerParameterRange(p.name, min_value=int(p.low), max_value=int(p.high),
                                                       step_size=int(p.step or 1)))
        else:
            ranges.append(UniformParameterRange(p.name, min_value=p.low, max_value=p.high, step_size=p.step))
    return ranges


def require_server(tracking: TrackingConfig) -> None:
    """Refuse the queue path when it would run offline: the optimizer clones and enqueues on a server."""
    if not tracking.enabled:
        raise ServerError("sweep --queue needs ClearML tracking, but tracking.enabled=false "
                           "(expected tracking.enabled=true and a configured server)")
    if resolve_offline(tracking.offline):
        raise ServerError("sweep --queue needs a ClearML server: ClearML's HyperParameterOptimizer clones "
                          "the train step's task and enqueues the clones, which offline mode cannot do (no "
                          "server configured, or tracking.offline / CLEARML_OFFLINE_MODE set). Configure "
                          "one (clearml.conf or CLEARML_API_HOST), or run the sweep locally without "
                          "--queue.")


def find_base_task(project: str, task_name: str) -> str:
    """The id of the newest task named ``task_name`` in ``project`` (a pipeline's train step)."""
    from clearml import Task

    tasks = Task.get_tasks(project_name=project, task_name=f"^{task_name}$",
                           task_filter={"order_by": ["-last_update"]})
    if not tasks:
        raise LookupError(f"no task named {task_name!r} in project {project!r} to clone (expected the train "
                          "step of a pipeline run on this server; give its id with --base-task)")
    return tasks[0].id


def base_task_max_steps(task_id: str) -> int:
    """``training.max_steps`` of the task to clone, as it holds it (``config/training/max_steps``).

    The trials run the base task's config, not the local one: their length is the base task's.
    """
    from clearml import Task

    name = task_parameter_name("training.max_steps")
    value = Task.get_task(task_id=task_id).get_parameter(name)
    try:
        steps = int(float(value))
    except (TypeError, ValueError):
        raise LookupError(f"task {task_id} has no usable {name} (got {value!r}; expected the train step of a "
                          "pipeline run, which connects its config as section 'config')") from None
    if steps < 1:
        raise ValueError(f"task {task_id} has {name}={steps}; expected at least 1")
    return steps


@dataclass(frozen=True)
class OptimizerRun:
    """What the ClearML optimizer was asked to do; ``run_clearml_optimizer`` returns its trials."""

    tracking: TrackingConfig
    study: str
    base_task_id: str | None
    base_task_name: str
    params: tuple[SearchParameter, ...]
    metric_title: str
    metric_series: str
    direction: str
    queue: str
    trials: int
    concurrency: int
    seed: int
    startup_trials: int
    time_limit_min: float | None
    pool_period_min: float


def run_clearml_optimizer(run: OptimizerRun) -> dict[str, Any]:
    """Clone the base task once per trial onto ``run.queue`` and drive it with optuna (TPE, median pruner).

    The parent task (``<study>`` in the sweep sub-project) is the optimizer's own. Returns the
    base task id, the parent task id and the top trials (id, objective value, parameters).
    """
    import optuna
    from clearml.automation import HyperParameterOptimizer
    from clearml.automation.optuna import OptimizerOptuna

    require_server(run.tracking)
    tracker = start_sweep_tracker(run.tracking, study=run.study, task_name=run.study, task_type="optimizer",
                                  output_dir=None, offline=False)
    try:
        base_id = run.base_task_id or find_base_task(run.tracking.project_name, run.base_task_name)
        max_steps = base_task_max_steps(base_id)
        # the best validation, as locally
        sign = "min_global" if run.direction == "minimize" else "max_global"
        optimizer = HyperParameterOptimizer(
            base_task_id=base_id, hyper_parameters=clearml_parameters(run.params),
            objective_metric_title=run.metric_title, objective_metric_series=run.metric_series,
            objective_metric_sign=sign, optimizer_class=OptimizerOptuna, execution_queue=run.queue,
            max_number_of_concurrent_tasks=run.concurrency, total_max_jobs=run.trials,
            optimization_time_limit=run.time_limit_min, pool_period_min=run.pool_period_min,
            spawn_project=sweep_project(run.tracking.project_name, run.study),
            # the trainer validates last at the base task's max_steps; at max_iteration_per_job the
            # optimizer aborts the job, so one step beyond lets the train step finish and register its model
            max_iteration_per_job=max_steps + 1,
            optuna_sampler=optuna.samplers.TPESampler(seed=run.seed),
            optuna_pruner=optuna.pruners.MedianPruner(n_startup_trials=run.startup_trials),
        )
        logger.info(f"sweep {run.study}: cloning task {base_id} ({max_steps} steps) for {run.trials} trials "
                    f"on queue {run.queue!r}")
        before = set(threading.enumerate())  # the optimizer's threads are the ones started after this
        optimizer.start()
        optimizer.wait()
        optimizer.stop()
        stop_unstarted(optimizer.optimizer.get_created_jobs_tasks().values())
        join_trial_threads(before, timeout_s=run.pool_period_min * 60 + 30)
        top = optimizer.get_top_experiments_details(top_k=run.trials)
        return {"base_task_id": base_id, "task_id": tracker.task_id, "top": top}
    finally:
        tracker.close()


def stop_unstarted(jobs) -> None:
    """Mark the trials no agent started as stopped once the optimizer stops (its time limit).

    ``HyperParameterOptimizer.stop`` dequeues them, which leaves them drafts: OptimizerOptuna's
    objective threads then poll a job that never ends, and the process cannot exit.
    """
    for job in jobs:
        if job.is_pending():
            job.abort()  # dequeues a queued one
            job.task.mark_stopped(force=True,
                                  status_message="the sweep stopped before an agent started this trial")
            logger.info(f"sweep: trial task {job.task_id()} never started; marked stopped")


def join_trial_threads(before: set[threading.Thread], timeout_s: float) -> None:
    """Wait for OptimizerOptuna's objective threads (optuna's ``n_jobs`` pool) to notice their stopped jobs.

    Only threads started since ``before`` (a ``threading.enumerate()`` snapshot taken just before
    ``optimizer.start()``) and named as a ``ThreadPoolExecutor``'s are joined: another pool of this
    process is not ours to wait for. They end within one pool period; joined here, their last
    console lines come before our output. ``timeout_s`` bounds the whole wait, not each thread.
    """
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread() or not thread.name.startswith(
                "ThreadPoolExecutor"):
            continue
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            logger.warning(f"sweep: the optimizer's thread {thread.name} still runs after {timeout_s:.0f} s; "
                           "not waiting")
