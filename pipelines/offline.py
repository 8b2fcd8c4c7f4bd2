"""Run the five steps in order in this process, one ClearML task (offline session) per step."""

import json
from typing import Any

from loguru import logger

from src.config import ExperimentConfig
from src.steps.context import read_status, update_status


def run_steps(cfg: ExperimentConfig, *, offline: bool | None = True, resume: bool = False) -> dict[str, Any]:
    """data prep -> tokenize -> train -> evaluate -> register; returns every step's output.

    With ``resume`` the steps already completed in the run folder are not repeated (their outputs
    are read back from ``status.json``) and training continues from its last good checkpoint.
    """
    from src.steps import data_prep, evaluate, register, tokenize, train

    run_dir = cfg.run_dir
    done = read_status(run_dir)["steps"] if resume else {}
    outputs: dict[str, Any] = {}

    def step(name: str, fn, *args, **kwargs) -> dict[str, Any]:
        previous = done.get(name, {})
        if previous.get("status") == "completed" and "output" in previous and name in ("data_prep", "tokenize"):
            logger.info(f"step {name}: reusing the completed output in {run_dir}")
            return previous["output"]
        result = fn(cfg, *args, offline=offline, **kwargs)
        update_status(run_dir, name, "completed", output=result)
        return result

    outputs["data_prep"] = step("data_prep", data_prep.run)
    outputs["tokenize"] = step("tokenize", tokenize.run, outputs["data_prep"])
    outputs["train"] = step("train", train.run, outputs["tokenize"], resume=resume)
    outputs["evaluate"] = step("evaluate", evaluate.run, outputs["tokenize"], outputs["train"])
    outputs["register"] = step("register", register.run, outputs["train"], outputs["evaluate"])
    state = update_status(run_dir, "pipeline", "completed")
    (run_dir / "pipeline_outputs.json").write_text(json.dumps(outputs, indent=2, default=str) + "\n")
    return outputs | {"status": state}
