"""Run the five steps in order in this process, one ClearML task (offline session) per step."""

import json
import time
from pathlib import Path
from typing import Any

from loguru import logger

from src.config import ExperimentConfig, config_to_dict
from src.steps.context import read_status, save_traceback, update_run, update_status
from src.storage import user_line

def reusable_steps() -> tuple[str, ...]:
    """The cached steps of the table: a resume keeps their output (check_resume refuses changes to them)."""
    from src.steps import STEPS

    return tuple(spec.name for spec in STEPS if spec.cache)


class PipelineError(RuntimeError):
    """A step failed; the message is the one line for the console (reason, where the traceback is)."""


def start_run(cfg: ExperimentConfig, resume: bool, changes: dict[str, tuple]) -> dict[str, Any]:
    """Write the run's config and identity into its folder; on resume, reset every step that runs again.

    A new run refuses a folder that already holds one: two runs never mix. A resume marks the
    steps it re-runs ``pending``, so ``status.json`` never shows a step completed by an earlier
    attempt after a later step has failed.
    """
    from src.runs import CONFIG_FILE, point_latest
    from src.runs.folders import owner
    from src.tracking.recovery import recover_offline_sessions

    run_dir = cfg.run_dir
    state = read_status(run_dir)
    if not resume and state["steps"]:
        raise FileExistsError(f"{run_dir} already holds a run (status {state['status']!r}); "
                              "give a new run_id, or continue it with --resume")
    if resume:
        recover_offline_sessions(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n", encoding="utf-8")
    done = {name: step | {"output": rebased(name, step["output"], run_dir)} for name, step in state["steps"].items()
            if resume and name in reusable_steps() and step.get("status") == "completed" and "output" in step}
    steps = {name: done[name] if name in done else {"status": "pending", "time": time.time()}
             for name, step in state["steps"].items()}  # a re-run step keeps nothing of its last attempt
    update_run(run_dir, steps=steps, failed_step=None, reason=None, owner=owner())
    update_status(run_dir, "pipeline", "running")
    if not resume:
        update_run(run_dir, run_id=run_dir.name, run_name=cfg.run_name, created=time.time())
    else:
        resumes = read_status(run_dir).get("resumes", [])
        update_run(run_dir, resumes=[*resumes, {"time": time.time(), "changes": {k: list(v) for k, v in changes.items()}}])
        if changes:
            logger.info("resuming {} with changed settings: {}", run_dir, ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    point_latest(run_dir)
    return done


def rebased(name: str, output: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A reused data step's output with its paths in ``run_dir`` as it is now (the run may have moved,
    or have been started from another working directory with a relative ``output_dir``)."""
    step_dir, moved = run_dir / name, dict(output)
    for key in ("data_dir", "tokenized_dir"):
        if key in moved:
            moved[key] = str(step_dir)
    if "tokenizers" in moved:
        moved["tokenizers"] = {side: str(step_dir / Path(p).name) for side, p in moved["tokenizers"].items()}
    return moved


def run_steps(cfg: ExperimentConfig, *, offline: bool | None = True, resume: bool = False,
              changes: dict[str, tuple] | None = None) -> dict[str, Any]:
    """data prep -> tokenize -> train -> evaluate -> register; returns every step's output.

    With ``resume`` the data steps already completed in the run folder are not repeated (their
    outputs are read back from ``status.json``) and training continues from its last good
    checkpoint. A failing step raises ``PipelineError`` with one line for the console.
    """
    import importlib

    from src.steps import STEPS

    run_dir = cfg.run_dir
    done = start_run(cfg, resume, changes or {})
    outputs: dict[str, Any] = {}

    def step(name: str, fn, *args, **kwargs) -> dict[str, Any]:
        if name in done:
            logger.info(f"step {name}: reusing the completed output in {run_dir}")
            return done[name]["output"]
        try:
            result = fn(cfg, *args, offline=offline, **kwargs)
        except Exception as err:
            failed = read_status(run_dir)["steps"].get(name, {})
            where = failed.get("traceback")
            if not where:  # it failed before its tracked task was open (e.g. starting the tracker)
                where = str(save_traceback(run_dir / name, err))
                update_status(run_dir, name, "failed", reason=f"{type(err).__name__}: {err}", traceback=where)
            cause = user_line(err) or f"{type(err).__name__}: {err}"  # "disk full: ..." says more than its type
            raise PipelineError(f"step {name} failed: {cause} (traceback: {where})") from err
        update_status(run_dir, name, "completed", output=result)
        return result

    for spec in STEPS:  # the pipeline's one table, in order; each step gets its parents' outputs
        run = importlib.import_module(f"src.steps.{spec.name}").run
        inputs = {argument: outputs[parent] for argument, parent in spec.upstream().items()}
        outputs[spec.name] = step(spec.name, run, **inputs, **({"resume": resume} if spec.name == "train" else {}))
    state = update_status(run_dir, "pipeline", "completed")
    (run_dir / "pipeline_outputs.json").write_text(json.dumps(outputs, indent=2, default=str) + "\n")
    return outputs | {"status": state}
