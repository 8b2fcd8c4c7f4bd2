"""Run the five steps in order in this process, one ClearML task per step: an offline session each
(``train`` with no server, or ``--offline``), or a task on the server (``train --local``)."""

import json
import shutil
import time
from pathlib import Path
from typing import Any

from loguru import logger

from src.config import config_to_dict
from src.experiment import ExperimentConfig
from src.runs import read_status, save_traceback, step_cache, update_run, update_status, write_atomically
from src.steps import STEPS, run_step
from src.storage import user_line


class PipelineError(RuntimeError):
    """A step failed; the message is the one line for the console (reason, where the traceback is)."""


def reusable(state: dict[str, Any], changes: dict[str, tuple]) -> list[str]:
    """The completed steps a resume keeps, in order: a step is kept when it completed, no change touches
    what it read, and every step it takes input from is kept too."""
    kept: list[str] = []
    for spec in STEPS:
        step = state["steps"].get(spec.name, {})
        if (step.get("status") == "completed" and "output" in step and all(p in kept for p in spec.parents)
                and not any(spec.reads(key) for key in changes)):
            kept.append(spec.name)
    return kept


def start_run(cfg: ExperimentConfig, resume: bool, changes: dict[str, tuple]) -> dict[str, Any]:
    """Write the run's config and status into its folder; on resume, reset every step that runs again.

    Called once every check has passed, and the only writer of ``config.json``: a run's folder changes
    when it actually starts, and a resume records there what it changed and which steps it reused.
    A new run refuses a folder that already holds one: two runs never mix. A resume marks the
    steps it re-runs ``pending``, so ``status.json`` never shows a step completed by an earlier
    attempt after a later step has failed.
    """
    from src.runs import CONFIG_FILE, owner, point_latest, recover_offline_sessions

    run_dir = cfg.run_dir
    state = read_status(run_dir)
    if not resume and state["steps"]:
        raise FileExistsError(f"{run_dir} already holds a run (status {state['status']!r}); "
                              "give a new run_id, or continue it with --resume")
    if resume:
        recover_offline_sessions(run_dir)
    kept = reusable(state, changes) if resume else []
    done = {name: state["steps"][name] | {"output": rebased(name, state["steps"][name]["output"], run_dir)}
            for name in kept}
    now = time.time()
    steps = {name: done[name] if name in done else {"status": "pending", "time": now}
             for name in state["steps"]}  # a re-run step keeps nothing of its last attempt
    steps["pipeline"] = {"status": "running", "time": now}
    fields = {"status": "running", "steps": steps, "owner": owner()}
    if not resume:
        fields |= {"run_id": run_dir.name, "run_name": cfg.run_name, "created": now}
    else:
        fields["resumes"] = [*state.get("resumes", []),
                             {"time": now, "changes": {k: list(v) for k, v in changes.items()},
                                                         "reused": kept}]
        if changes:
            logger.info("resuming {} with changed settings: {}", run_dir, ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / CONFIG_FILE, json.dumps(config_to_dict(cfg), indent=2) + "\n")
    update_run(run_dir, **fields, failed_step=None, reason=None)
    point_latest(run_dir)
    return done


def rebased(name: str, output: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A reused step's output with its paths in ``run_dir`` as it is now (the run may have moved,
    or have been started from another working directory with a relative ``output_dir``)."""
    step_dir, moved = run_dir / name, dict(output)
    for key in ("data_dir", "tokenized_dir"):
        if key in moved:
            moved[key] = str(step_dir)
    if "tokenizers" in moved:
        moved["tokenizers"] = {side: str(step_dir / Path(p).name) for side, p in moved["tokenizers"].items()}
    if "checkpoint" in moved:  # <run>/train/checkpoints/best.pt
        moved["checkpoint"] = str(
            step_dir / Path(moved["checkpoint"]).parent.name / Path(moved["checkpoint"]).name)
    if "metrics_path" in moved:
        moved["metrics_path"] = str(step_dir / Path(moved["metrics_path"]).name)
    return moved


def run_steps(cfg: ExperimentConfig, *, offline: bool | None = True, resume: bool = False,
              changes: dict[str, tuple] | None = None, use_cache: bool = True) -> dict[str, Any]:
    """data prep -> tokenize -> train -> evaluate -> register; returns every step's output.

    With ``resume`` the data steps already completed in the run folder are not repeated (their
    outputs are read back from ``status.json``) and training continues from its last good
    checkpoint. With ``use_cache`` a data step whose sections equal an earlier run's takes that run's
    output (``src/runs/step_cache.py``). A failing step raises ``PipelineError`` with one line for the
    console.
    """
    run_dir = cfg.run_dir
    done = start_run(cfg, resume, changes or {})
    outputs: dict[str, Any] = {}

    config = config_to_dict(cfg)

    def step(spec, **inputs) -> dict[str, Any]:
        name = spec.name
        if name in done:
            logger.info(f"step {name}: reusing the completed output in {run_dir}")
            return done[name]["output"]
        key = step_cache.step_key(name, config, spec.shaped_by) if spec.shaped_by else None
        if key and use_cache and (entry := step_cache.lookup(Path(cfg.output_dir), name, key)):
            step_cache.restore(entry, run_dir, name)
            result = rebased(name, entry["output"], run_dir)
            logger.info(f"step {name}: the same {' and '.join(spec.shaped_by)} as run {entry['run_id']}: "
                        "its output is reused (train --no-cache runs it again)")
            update_status(run_dir, name, "completed", output=result, cached=True, cached_from=entry["run_id"])
            return result
        if read_status(run_dir)["steps"].get(name, {}).get("cached"):  # its folder links another run's files
            shutil.rmtree(run_dir / name, ignore_errors=True)
        try:
            result = run_step(spec, cfg, offline=offline, **inputs)
        except Exception as err:
            failed = read_status(run_dir)["steps"].get(name, {})
            where = failed.get("traceback")
            if not where:  # it failed before its tracked task was open (e.g. starting the tracker)
                where = str(save_traceback(run_dir / name, err))
                update_status(run_dir, name, "failed", reason=f"{type(err).__name__}: {err}", traceback=where)
            # "disk full: ..." says more than its type
            cause = user_line(err) or f"{type(err).__name__}: {err}"
            raise PipelineError(f"step {name} failed: {cause} (traceback: {where})") from err
        update_status(run_dir, name, "completed", output=result, **({"cached": False} if key else {}))
        if key:
            step_cache.remember(Path(cfg.output_dir), name, key, run_dir, result)
        return result

    for spec in STEPS:  # the pipeline's one table, in order; each step gets its parents' outputs
        inputs = {argument: outputs[parent] for argument, parent in spec.upstream().items()}
        outputs[spec.name] = step(spec, **inputs, **({"resume": resume} if spec.resumable else {}))
    state = update_status(run_dir, "pipeline", "completed")
    (run_dir / "pipeline_outputs.json").write_text(json.dumps(outputs, indent=2, default=str) + "\n")
    return outputs | {"status": state}
