"""ClearML pipeline objects for pipelines/pipeline.py, which must not import clearml itself."""

import os
import subprocess
from pathlib import Path
from typing import Any

from loguru import logger

# "none": pipeline steps carry no git repository (the agents have the code on their PYTHONPATH)
STEP_REPO_ENV = "STEPWISE_STEP_REPO"


def new_pipeline_controller(name: str, project: str, **options: Any):
    """A ``clearml.PipelineController`` whose task re-runs our CLI on the services agent.

    ``options`` go to its constructor. Defaults: steps tagged with the pipeline id, and the
    pipeline stops at the first failed step.

    The controller's task is created here (``init_controller_task``) rather than by the
    constructor: the constructor calls ``Task.init`` itself, and under ``python -m src.main`` the
    SDK then takes the code to re-run from the file that called ``Task.init``, i.e. clearml's own
    ``controller.py`` (its repository, its requirements). The services agent would run that file
    instead of ``python -m src.main train ...``; where site-packages sits inside a git checkout
    (pyenv) the requirement scan of that checkout also blocked ``start()`` for minutes.
    """
    from clearml import PipelineController, Task

    options = {"add_pipeline_tags": True, "abort_on_failure": True} | options
    if Task.current_task() is None:
        init_controller_task(name, project)
    return PipelineController(name=name, project=project, **options)


def init_controller_task(name: str, project: str):
    """``Task.init`` of a pipeline controller, called from this repository's code.

    Locally it records this checkout as the task's code, with ``-m src.main <argv>`` as entry
    point (the SDK's module detection), and files the task where ``PipelineController`` files its
    own: project ``<project>/.pipelines/<name>``, hidden, system tag ``pipeline`` (the web UI's
    pipelines page lists those). On the services agent it attaches to the queued controller task.
    Uses two private classmethods of ``PipelineController`` (clearml 2.1.12) for the project layout,
    so that it stays the SDK's; tests/pipelines/test_pipeline_server.py checks the layout.
    """
    from clearml import PipelineController, Task

    layout = PipelineController._create_pipeline_project_args(name, project)
    task = Task.init(
        project_name=layout["project_name"],
        task_name=layout["task_name"],
        task_type=Task.TaskTypes.controller,
        reuse_last_task_id=False,
        auto_connect_arg_parser=False,  # the pipeline parameters (one per config key) are the configuration
        auto_connect_frameworks=False,
        auto_resource_monitoring=False,
    )
    if Task.running_locally():
        PipelineController._create_pipeline_projects(task, layout["parent_project"], layout["project_name"])
        task.set_system_tags([*(task.get_system_tags() or []), PipelineController._tag])
    return task


def describe_pipeline_parameters(pipe, values: dict[str, Any], descriptions: dict[str, str],
                                 types: dict[str, str]) -> None:
    """Store the pipeline's parameters with their descriptions and types, locally, before ``start``.

    clearml 2.1.12 drops what ``add_parameter(description=..., param_type=...)`` gives: ``start``
    passes them keyed by bare name to ``Task._set_parameters``, which looks them up by ``Args/<name>``
    (so the web UI shows no description and a type guessed from the value). ``start`` keeps a
    description and type already stored, so writing them first, keyed as it looks them up, shows them.
    """
    from clearml import PipelineController, Task

    if not Task.running_locally():
        return
    section = PipelineController._args_section
    options = {"__parameters_descriptions": {f"{section}/{k}": v for k, v in descriptions.items()},
               "__parameters_types": {f"{section}/{k}": v for k, v in types.items()}, "__update": True}
    pipe.task._set_parameters({f"{section}/{k}": v for k, v in values.items()}, **options)


def edited_pipeline_parameters(pipe) -> dict[str, str] | None:
    """On the services agent: the pipeline's parameters as the server holds them, strings by name
    (``{"training/lr": "0.0003"}``), edited in the web UI or not; ``None`` when running locally.

    Read from the controller's task itself, before ``start``: ``PipelineController.get_parameters()``
    misses the UI's edits until ``start`` connects them (clearml pull request #1489), and by then
    ``start`` is already making step tasks.
    """
    from clearml import PipelineController, Task

    if Task.running_locally():
        return None
    section = PipelineController._args_section + "/"
    stored = pipe.task.get_parameters(backwards_compatibility=False) or {}
    return {key.removeprefix(section): value for key, value in stored.items() if key.startswith(section)}


def pipeline_web_url(pipe) -> str:
    """The web page of the pipeline's controller task."""
    return pipe.task.get_output_log_web_page()


def step_checkout(root: Path) -> dict[str, str]:
    """``repo``/``repo_branch``/``repo_commit`` for ``add_function_step``: this checkout's remote and commit.

    A function step is a standalone script; with these the agent clones the repository at that
    commit and runs the script from its root, so ``from src.steps import ...`` works. Passed as a
    URL because clearml 2.1.12 fails on a local repository path there (``TypeError`` in
    ``CreateAndPopulate.create_task``, clearml pull request #1504). Uncommitted changes do not
    reach the steps: commit and push first.

    ``{}`` (steps carry no repository; agents need this code on their ``PYTHONPATH``) without a
    remote ``origin``, or when ``STEP_REPO_ENV`` is ``none`` (agents whose image or mount has the code).
    """
    if os.environ.get(STEP_REPO_ENV, "").strip().lower() == "none":
        return {}

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    url = git("config", "--get", "remote.origin.url")
    if not url:
        logger.warning(
            "{} has no git remote 'origin': pipeline steps carry no repository, so agents need this code "
            "on their PYTHONPATH", root,
        )
        return {}
    return {"repo": url, "repo_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "repo_commit": git("rev-parse", "HEAD")}
