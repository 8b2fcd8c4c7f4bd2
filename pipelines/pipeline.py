"""The ClearML pipeline: one function step per entry of ``STEPS``, each with its queue, docker image
and cache rule.

This file only wires. Every step's task runs ``src.steps.run_pipeline_step`` (ClearML copies its
source into the step's script) with the step's name, the pipeline's config and its parents'
outputs; it runs the step as ``train`` does offline, validating the config it receives (the
parameters arrive as strings, clearml #1668).
"""

import json
from pathlib import Path
from typing import Any

from src.config import config_to_dict
from src.experiment import ExperimentConfig
from src.steps import STEPS, run_pipeline_step
from src.steps.table import pipeline_monitors

QUEUES_FILE = "queues/queues.yaml"
REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "requirements.txt"
# What the controller imports (src.main -> pipelines -> src.config, src.orchestration): no torch.
CONTROLLER_PACKAGES = ("clearml", "loguru", "pydantic", "PyYAML")


def pinned_requirements(names: tuple[str, ...]) -> list[str]:
    """The lines of requirements.txt that pin ``names`` (the controller needs no torch)."""
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line.split("==")[0].strip() in names]


# --- the plan, shared by --dry-run and the controller ----------------------------------------------
def pipeline_plan(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                  use_cache: bool = True) -> dict[str, Any]:
    """Steps with parents, queue, docker and arguments; the controller's queue and parameters.

    ``queue`` (``--queue NAME``) must be defined in ``queues/queues.yaml``; the steps that the file
    puts on the training queue (train, evaluate) go to it, the others stay where the file says.
    """
    from src.config.queues import load_queue_config

    queues = load_queue_config(queues_file)
    training_queue = queues.queue_for("train")
    if queue is not None:
        queues.queue(queue)  # unknown name -> ConfigError listing the defined queues

    def placed(step: str) -> str:
        name = queues.queue_for(step)
        return queue if queue is not None and name == training_queue else name

    plan_steps = []
    for spec in STEPS:
        name = placed(spec.name)
        target = queues.queue(name)
        plan_steps.append({
            "name": spec.name, "parents": list(spec.parents), "queue": name, "docker": target.docker_image,
            "docker_args": " ".join(target.docker_args) or None,
                           "docker_setup": target.docker_setup_script or None,
            "cache": spec.cache and use_cache,
            "kwargs": {"step": spec.name, "config": "${pipeline.config}", **spec.inputs},
            "monitor": pipeline_monitors(spec.name, cfg.tracking.model_name),
        })
    return {
        "pipeline": f"{cfg.tracking.task_name}-pipeline", "project": cfg.tracking.project_name,
        "controller_queue": placed("controller"),
        "parameters": {"config": config_to_dict(cfg)},
        "steps": plan_steps,
    }


def describe_pipeline(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                      use_cache: bool = True) -> str:
    """Human-readable DAG, queues and parameters for ``--dry-run``."""
    plan = pipeline_plan(cfg, queue, queues_file, use_cache)
    lines = [f"pipeline {plan['pipeline']!r} in project {plan['project']!r}",
             f"controller -> queue {plan['controller_queue']!r}", "", "DAG:"]
    for step in plan["steps"]:
        after = " <- " + ", ".join(step["parents"]) if step["parents"] else ""
        cached = " [cached]" if step["cache"] else ""
        lines.append(f"  {step['name']}{after}{cached}")
        lines.append(
            f"      queue {step['queue']!r}, docker {step['docker']!r} {step['docker_args'] or ''}".rstrip())
    lines += ["", "parameters:", json.dumps(plan["parameters"], indent=2)]
    return "\n".join(lines)


def build_pipeline(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                   use_cache: bool = True):
    """A ``clearml.PipelineController`` for the plan (built through src.orchestration's import of clearml)."""
    from src.orchestration import new_pipeline_controller, step_checkout

    plan = pipeline_plan(cfg, queue, queues_file, use_cache)
    # the agent clones this remote at this commit and runs the step from its root
    checkout = step_checkout(REPO_ROOT)
    pipe = new_pipeline_controller(name=plan["pipeline"], project=plan["project"],
                                   packages=pinned_requirements(CONTROLLER_PACKAGES))
    pipe.add_parameter("config", json.dumps(plan["parameters"]["config"]),
                       "the whole ExperimentConfig as JSON")
    for step, spec in zip(plan["steps"], STEPS):
        pipe.add_function_step(
            name=spec.name, function=run_pipeline_step, function_kwargs=step["kwargs"],
            function_return=["output"], parents=list(spec.parents) or None, task_type=spec.task_type,
            execution_queue=step["queue"], docker=step["docker"], docker_args=step["docker_args"],
            docker_bash_setup_script=step["docker_setup"],
            cache_executed_step=step["cache"], project_name=plan["project"],
                               task_name=f"{cfg.tracking.task_name}-{spec.name}",
            packages=REQUIREMENTS.as_posix(), **checkout,
            # as our Tracker: no torch.save/argparse hooks, metrics and models are reported explicitly
            auto_connect_frameworks=False, auto_connect_arg_parser=False, **step["monitor"],
        )
    return pipe, plan


def enqueue_pipeline(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                     use_cache: bool = True) -> None:
    """Put the controller on its queue; on the services agent the same call runs the DAG.

    Locally ``start`` stores the pipeline, enqueues the controller and ends this process
    (ClearML's ``execute_remotely``), so the web UI link is printed before it.
    """
    from src.orchestration import pipeline_web_url

    pipe, plan = build_pipeline(cfg, queue, queues_file, use_cache)
    print(f"pipeline {plan['pipeline']!r}: controller on queue {plan['controller_queue']!r}, "
          f"follow it at {pipeline_web_url(pipe)}", flush=True)
    pipe.start(queue=plan["controller_queue"])
