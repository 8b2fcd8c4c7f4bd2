"""The ClearML pipeline: one function step per entry of ``STEPS``, each with its queue, docker image
and cache rule.

This file only wires. The pipeline has one parameter per config key (``training/lr``, typed; the web
UI's "New Run" dialog edits them one by one). Every step's task runs ``src.steps.run_pipeline_step``
(ClearML copies its source into the step's script) with the step's name, its parameters (the config
sections that shape its output, ``src/steps/parameters.py``) and its parents' outputs; it runs the
step as ``train`` does offline, validating what it receives (the parameters arrive as strings,
clearml #1668).

On the services agent, the controller reads the pipeline parameters back (edited or not), checks
them as one config, and only then starts the DAG: a bad edit fails the pipeline before any step
task exists (``check_pipeline_parameters``). Each step's parameters are cut from that checked config
just before its task is made (``add_function_step(pre_execute_callback=...)``), so they are what
ClearML's step cache hashes.
"""

import json
from pathlib import Path
from typing import Any

from loguru import logger

from src.experiment import ExperimentConfig
from src.steps import STEP, STEPS, run_pipeline_step
from src.steps.parameters import (
    check_pipeline_parameters,
    parameter_types,
    parameters_digest,
    pipeline_parameters,
    step_parameters,
)
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
            "cache": spec.cache and use_cache and not (spec.name == "tokenize" and _names_a_tag(cfg)),
            "kwargs": step_kwargs(spec.name, cfg) | spec.inputs,
            "parameters": list(spec.shaped_by) or ["all"],
            "monitor": pipeline_monitors(spec.name, cfg.tracking.model_name),
        })
    return {
        "pipeline": f"{cfg.tracking.task_name}-pipeline", "project": cfg.tracking.project_name,
        "controller_queue": placed("controller"),
        "parameters": pipeline_parameters(cfg),
        "steps": plan_steps,
    }


def _names_a_tag(cfg: ExperimentConfig) -> bool:
    """A source given as ``NAME:TAG`` (no file of that name here): the model that holds the tag when the
    tokenize step runs, whose tokenizer it takes, may be another than the one a cached tokenize took, so
    that step is not cached (a model id always names the same model)."""
    sources = (cfg.model.init_from, cfg.training.distill_from)
    return any(s is not None and ":" in s and not Path(s).expanduser().exists() for s in sources)


def step_kwargs(step: str, cfg: ExperimentConfig) -> dict[str, str]:
    """A step's function arguments from the config: its parameters as JSON and their digest."""
    config = json.dumps(step_parameters(STEP[step], cfg), sort_keys=True)
    return {"step": step, "config": config, "config_digest": parameters_digest(config)}


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
        lines.append(f"      parameters: {', '.join(step['parameters'])}")
    types = parameter_types()
    lines += ["", "pipeline parameters (one per key; edit them in the web UI's New Run dialog):"]
    lines += [f"  {name} ({types[name]}) = {value}" for name, value in plan["parameters"].items()]
    return "\n".join(lines)


def build_pipeline(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                   use_cache: bool = True, checked: dict[str, ExperimentConfig] | None = None):
    """A ``clearml.PipelineController`` for the plan (built through src.orchestration's import of clearml).

    ``checked["config"]``: the config the steps' parameters are cut from when the controller runs them
    (``cfg`` until ``check_pipeline_parameters`` replaces it with the parameters as edited)."""
    from src.orchestration import describe_pipeline_parameters, new_pipeline_controller, step_checkout

    checked = {"config": cfg} if checked is None else checked
    plan = pipeline_plan(cfg, queue, queues_file, use_cache)
    # the agent clones this remote at this commit and runs the step from its root
    checkout = step_checkout(REPO_ROOT)
    pipe = new_pipeline_controller(name=plan["pipeline"], project=plan["project"],
                                   packages=pinned_requirements(CONTROLLER_PACKAGES))
    types, descriptions = parameter_types(), parameter_descriptions()
    for name, value in plan["parameters"].items():
        pipe.add_parameter(name, value, descriptions[name], param_type=types[name])
    describe_pipeline_parameters(pipe, plan["parameters"], descriptions, types)
    for step, spec in zip(plan["steps"], STEPS):
        pipe.add_function_step(
            name=spec.name, function=run_pipeline_step, function_kwargs=step["kwargs"],
            pre_execute_callback=_with_checked_parameters(spec.name, checked),
            post_execute_callback=_say_if_cached,
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


def _with_checked_parameters(step: str, checked: dict[str, ExperimentConfig]):
    """ClearML's pre-execute callback of a step: its arguments cut from the checked config, set before
    the step's task is made and hashed for the cache; the task's ``output_uri`` from it too."""

    def callback(pipeline, node, parameters: dict[str, Any]) -> bool:
        cfg = checked["config"]
        kwargs = {f"kwargs/{key}": value for key, value in step_kwargs(step, cfg).items()}
        parameters.update(kwargs)
        node.parameters.update(kwargs)  # what the stored DAG and the controller's log show for the step
        if cfg.tracking.output_uri:
            node.output_uri = cfg.tracking.output_uri
        return True

    return callback


def _say_if_cached(pipeline, node) -> None:
    """ClearML's post-execute callback: one log line when the step's cache served it (the controller's
    log says nothing else; the web UI marks the node)."""
    if node.job is not None and node.job.is_cached_task():
        logger.info(f"step {node.name}: reused task {node.executed} from ClearML's step cache (same code "
                    "and parameters)")


def parameter_descriptions() -> dict[str, str]:
    """What the web UI shows beside each pipeline parameter."""
    from src.steps.parameters import parameter_choices

    described = {}
    for name, choices in parameter_choices().items():
        users = [spec.name for spec in STEPS
                 if not spec.shaped_by or any(name == k.replace(".", "/") or name.startswith(k + "/")
                                              for k in spec.shaped_by)]
        text = f"used by {', '.join(users)}"
        described[name] = text + (f"; one of {', '.join(choices)}" if choices else "")
    return described


def enqueue_pipeline(cfg: ExperimentConfig, queue: str | None, queues_file: str = QUEUES_FILE,
                     use_cache: bool = True) -> None:
    """Put the controller on its queue; on the services agent the same call runs the DAG.

    Locally ``start`` stores the pipeline, enqueues the controller and ends this process
    (ClearML's ``execute_remotely``), so the web UI link is printed before it.

    On the services agent the pipeline parameters come back as the server holds them (edited in the
    web UI or not): they are checked as one config before ``start`` makes any step's task, and a
    bad value stops the controller with one line naming the key (``ConfigError``, exit status 2).
    """
    from src.orchestration import edited_pipeline_parameters, pipeline_web_url

    checked = {"config": cfg}
    pipe, plan = build_pipeline(cfg, queue, queues_file, use_cache, checked=checked)
    edited = edited_pipeline_parameters(pipe)
    if edited is not None:  # on the services agent
        checked["config"] = check_pipeline_parameters(edited, cfg)
    print(f"pipeline {plan['pipeline']!r}: controller on queue {plan['controller_queue']!r}, "
          f"follow it at {pipeline_web_url(pipe)}", flush=True)
    pipe.start(queue=plan["controller_queue"])
