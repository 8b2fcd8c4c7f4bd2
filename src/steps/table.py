"""The pipeline's five steps, in order: what each does, what it takes, its ClearML task type and cache rule.

Each function takes the open ``StepContext`` (``src/tasks/spec.py``) and its parents' outputs, and
calls the configured task's body for the step (``src.tasks.TASKS[cfg.task]``); ``run_step``
(``src/steps/runner.py``) opens the step's tracked task around it.
"""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger

from src.runs import BEST_CHECKPOINT
from src.tasks import TASKS, StepContext

Output = dict[str, Any]
# the register step's scalar (title, series): the task's gate metric on the test split (BLEU, accuracy, bpc,
# masked-token loss), under one name for every task so that the pipeline can show it before it runs
HEADLINE = ("gate", "test metric")
REPORT_ARTIFACT = "report.html"  # the register step's artifact: the run's HTML report (src/report)


@dataclass(frozen=True)
class StepSpec:
    """One step of the DAG.

    ``inputs`` maps a function argument to the step whose output it is, in ClearML's reference syntax
    (``{"data": "${data_prep.output}"}``). ``cache``: ClearML may reuse the step's earlier result for
    equal inputs. ``reads``: whether the step's output depends on a config key (beyond its parents'
    outputs); a resume that changes none of its keys reuses its completed output instead of running it
    again (a second train task, a second model). ``resumable``: a resume that does run it continues its
    own work (training from its last checkpoint) instead of starting it again.
    """

    name: str
    function: Callable[..., Output]
    inputs: dict[str, str]
    task_type: str  # ClearML's: data_processing, training, testing, custom
    cache: bool = False
    # the config sections its output depends on, when no other ones: `train` then reuses an earlier run's
    # output for equal sections (src/runs/step_cache.py), and on ClearML they are all the step receives
    # and connects, so its cache key changes only with them (src/steps/parameters.py); () = everything
    shaped_by: tuple[str, ...] = ()
    reads: Callable[[str], bool] = lambda key: False  # data_prep, tokenize: check_resume refuses data changes
    resumable: bool = False

    def upstream(self) -> dict[str, str]:
        """Function argument -> the step whose output it is: ``{"data": "data_prep"}``."""
        return {argument: reference.strip("${}").split(".")[0] for argument, reference in self.inputs.items()}

    @property
    def parents(self) -> tuple[str, ...]:
        """The steps it takes input from, in argument order: its parents in the DAG."""
        return tuple(dict.fromkeys(self.upstream().values()))


def data_prep(step: StepContext) -> Output:
    """Read the raw data, clean, split, and save the dataset with its data card; online, publish it as a
    ClearML Dataset version (``src/steps/corpus.py``)."""
    from src.steps.corpus import prepare

    return prepare(step, TASKS[step.cfg.task].data_prep)


def tokenize(step: StepContext, data: Output) -> Output:
    """Make the tokenizer from the training split and encode every split."""
    from src.steps.corpus import local_corpus, record_use

    used = record_use(step, data)
    step = _sources_here(step)
    return TASKS[step.cfg.task].tokenize(step, local_corpus(step, data)) | used


def _sources_here(step: StepContext) -> StepContext:
    """The tokenize step with ``model.init_from`` and ``training.distill_from`` as paths on this machine: a
    registry model that ``train --queue`` left as ``NAME:TAG`` is downloaded here, on the agent (its
    tokenizer comes with it); a path is checked. Its sections may be partial (``AbsentSection``), which
    copy as pydantic configs do."""
    from src.orchestration import source_here

    cfg = step.cfg
    model, training = cfg.model, cfg.training
    if model.init_from is not None:
        model = model.model_copy(update={"init_from": source_here("model.init_from", model.init_from,
                                                                   cfg.output_dir)})
    if training.distill_from is not None:
        training = training.model_copy(update={"distill_from": source_here(
            "training.distill_from", training.distill_from, cfg.output_dir)})
    return replace(step, cfg=cfg.model_copy(update={"model": model, "training": training}))


def train(step: StepContext, tokenized: Output, resume: bool = False) -> Output:
    """Train the model; the best checkpoint becomes an output model of the step's task.

    With ``training.nproc_per_node > 1``, ``training.nodes > 1`` (on ClearML agents) or under
    ``torchrun`` the step runs data-parallel (``src/training/distributed.py``): this process is rank 0
    of its machine and the other ranks run ``train_worker`` with the same inputs.
    """
    from src.config import config_to_dict
    from src.orchestration import launch_nodes
    from src.steps.corpus import record_use
    from src.training.distributed import data_parallel, resolve_device

    used = record_use(step, tokenized)
    if not resume:  # a resume keeps its weights (its config's sources are the paths it started from)
        from src.orchestration import resolve_in_step

        # a registry model left as NAME:TAG by train --queue: fetched here, on the agent, with its sizes
        step = replace(step, cfg=resolve_in_step(step.cfg))
    tc = step.cfg.training
    link_input_models(step)
    launch_nodes(step.tracker, tc.nodes, tc.nproc_per_node)  # on an agent: the other nodes' tasks
    inputs = {"config": config_to_dict(step.cfg), "tokenized": tokenized, "resume": resume,
              "run_dir": str(step.run_dir)}
    with data_parallel(tc.nproc_per_node, resolve_device(tc.device).type, train_worker, inputs):
        return TASKS[step.cfg.task].train(step, tokenized, resume) | used


def link_input_models(step: StepContext) -> None:
    """The lineage: the model the weights started from (``init_from``) and a distilled student's teacher
    (``distill_from``) as the task's input models, so each model's page in the web UI lists this task."""
    from src.orchestration import init_model_source

    cfg = step.cfg
    for name, source in (("init_from", cfg.model.init_from), ("distill_from", cfg.training.distill_from)):
        if source is not None and (model := init_model_source(source)) is not None:
            step.tracker.set_input_model(model, name=name)


def train_worker(inputs: dict[str, Any]) -> None:
    """A data-parallel rank other than 0: the same training body, untracked (rank 0 reports)."""
    from src.experiment import validate_config
    from src.tracking import NullTracker

    cfg = validate_config(inputs["config"], source="train step inputs from rank 0")  # a new process
    step = StepContext("train", cfg, Path(inputs["run_dir"]), NullTracker())
    TASKS[cfg.task].train(step, inputs["tokenized"], inputs["resume"])


def evaluate(step: StepContext, tokenized: Output, trained: Output) -> Output:
    """Score the best checkpoint, rebuilt from the checkpoint alone, on the held-out test split."""
    from src.inference import load_for_inference
    from src.steps.corpus import record_use
    from src.tracking import resolve_input
    from src.training.monitor import parameter_count

    checkpoint = resolve_input(trained, "checkpoint", artifact=f"{step.cfg.tracking.model_name}-weights")
    model = load_for_inference(checkpoint, step.cfg.training.device)  # model, tokenizers, labels
    step.tracker.set_properties(parameters=parameter_count(model.model))
    used = record_use(step, tokenized, trained)
    return TASKS[step.cfg.task].evaluate(step, tokenized, model) | used


def register(step: StepContext, trained: Output, evaluated: Output) -> Output:
    """Tag the train step's model production (and publish it) only when it passes the quality gate.

    The model was registered once, by the train step; this step finds it by id and adds its stage,
    test metrics and the gate's reason, so the registry holds one model per trained checkpoint.
    """
    from src.evaluation.gate import quality_gate
    from src.orchestration import published_model_metric
    from src.steps.corpus import record_use

    cfg, tracker = step.cfg, step.tracker
    used = record_use(step, trained, evaluated)
    gate = TASKS[cfg.task].gate(cfg, evaluated["metrics"])  # the task's metric: BLEU, accuracy, bpc
    higher_is_better = gate.get("higher_is_better", True)  # bpc: lower is better
    champion = published_model_metric(cfg.tracking.project_name, cfg.tracking.model_name, gate["metric"],
                                      higher_is_better=higher_is_better)
    decision = quality_gate(gate["value"], gate["threshold"], champion, metric=gate["name"],
                            higher_is_better=higher_is_better)
    model_id = tracker.update_model(
        trained["model_id"], name=cfg.tracking.model_name, source_task_id=trained["task_id"],
        tags=[decision.stage, *cfg.tracking.tags],
        metadata={**gate["metadata"], "stage": decision.stage, "reason": decision.reason},
        publish=decision.promote,
    )
    record = {"model_id": model_id, "stage": decision.stage, "reason": decision.reason,
              gate["metric"]: gate["value"],
              f"champion_{gate['metric']}": champion, "threshold": gate["threshold"]}
    tracker.upload_artifact("registration", record)
    tracker.log_scalar(*HEADLINE, gate["value"], 0)
    tracker.set_properties(gate_metric=gate["name"], gate_value=gate["value"], stage=decision.stage)
    tracker.log_text(f"registration: {decision.stage} ({decision.reason})")
    upload_report(step, trained, evaluated, record)
    return record | {"task_id": tracker.task_id} | used


def upload_report(step: StepContext, trained: Output, evaluated: Output, registration: Output) -> Path | None:
    """The run's HTML report (``src/report``), with this step's decision, as artifact ``REPORT_ARTIFACT``.

    Offline and locally the run folder holds every step's files. On an agent this step runs in a folder of
    its own, so the files the report draws from (the config, the training history, the test metrics) are
    first fetched from the parent steps' artifacts. The page is the run folder's report.html, which
    ``pipelines/run.py`` writes again when the pipeline ends (with the run's final status). Best effort, as
    there: a report that fails is a warning, not a failed registration.
    """
    from src.config import config_to_dict
    from src.report import write_report
    from src.runs import CONFIG_FILE, update_status
    from src.tracking import resolve_input

    run_dir = step.run_dir
    try:
        if not (run_dir / CONFIG_FILE).is_file():  # an agent's folder: start_run wrote none here
            (run_dir / CONFIG_FILE).write_text(json.dumps(config_to_dict(step.cfg), indent=2) + "\n")
        for parent, relative, artifact in (
                (trained, "train/train_history.jsonl", "train_history"),
                (evaluated, "evaluate/metrics.json", "metrics")):
            target = run_dir / relative
            found = resolve_input({"path": str(target), "task_id": parent["task_id"]}, "path",
                                  artifact=artifact)
            if found != target:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found, target)
        update_status(run_dir, step.name, "running", output=registration)  # the report shows the decision
        path = write_report(run_dir)  # the run folder's report.html, rewritten when the pipeline ends
        step.tracker.upload_artifact(REPORT_ARTIFACT, path)
        return path
    except Exception as err:  # noqa: BLE001 (the registration is done; the report is a convenience)
        logger.warning(f"register: no {REPORT_ARTIFACT} artifact ({type(err).__name__}: {err})")
        return None


def pipeline_monitors(step: str, model_name: str) -> dict[str, list]:
    """What the ClearML pipeline task shows of ``step`` (``add_function_step``'s ``monitor_*``: the controller
    copies them from the step's task onto its own): the train step's model, the register step's headline
    metric (``HEADLINE``), its registration record and the HTML report."""
    if step == "train":
        # the SDK names a task's model entry after the weights file (best.pt -> "best"), the model itself
        # ``model_name``; the pipeline shows it under ``model_name``
        return {"monitor_models": [(BEST_CHECKPOINT.stem, model_name)]}
    if step == "register":
        return {"monitor_metrics": [HEADLINE], "monitor_artifacts": ["registration", REPORT_ARTIFACT]}
    return {}


def _train_reads(key: str) -> bool:
    """Training reads the model, training and batching settings, augmentation and its validation budget."""
    if key == "evaluation.valid_max_tokens":
        return True
    return not key.startswith(("evaluation.", "tracking.")) and key != "data.min_eval_pairs"


STEPS = (
    StepSpec("data_prep", data_prep, {}, "data_processing", cache=True, shaped_by=("task", "data")),
    StepSpec("tokenize", tokenize, {"data": "${data_prep.output}"}, "data_processing", cache=True,
             # model.init_from: a pretrained model brings its own tokenizer (src/training/init_from.py), as
             # a distillation teacher does; the image keys: images are checked against them and their
             # patches counted
             shaped_by=("task", "data", "tokenizer", "model.init_from", "model.in_channels",
                        "model.image_size", "model.patch_size", "training.distill_from")),
    StepSpec("train", train, {"tokenized": "${tokenize.output}"}, "training",
             reads=_train_reads, resumable=True),
    StepSpec("evaluate", evaluate, {"tokenized": "${tokenize.output}", "trained": "${train.output}"},
             "testing",
             reads=lambda key: key.startswith("evaluation.") or key == "training.device"),
    StepSpec("register", register, {"trained": "${train.output}", "evaluated": "${evaluate.output}"},
             "custom",
             reads=lambda key: key.startswith(("evaluation.", "tracking."))),
)
STEP = {spec.name: spec for spec in STEPS}  # by name, as an agent's pipeline step names its own
