"""``python -m src.main train``: choose the mode (offline, local, queue, dry run) and run it.

Every ``train`` gets a new run folder (``src/runs``); ``--resume [RUN]`` continues one, after
``check_resume`` has compared its stored config with the requested one.
"""

import argparse
from pathlib import Path
from typing import Any

from loguru import logger

from src.experiment import ExperimentConfig, apply_overrides, load_config, validate_config


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.project_name:
        overrides.append(f"tracking.project_name={args.project_name}")
    if args.task_name:
        overrides.append(f"tracking.task_name={args.task_name}")
    if getattr(args, "nproc", 1) != 1:  # --nproc 1 (the default) leaves the config's own value
        overrides.append(f"training.nproc_per_node={args.nproc}")
    return overrides


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, _overrides(args))


def resumed_config(args: argparse.Namespace) -> tuple[ExperimentConfig, dict[str, tuple]]:
    """The config to continue run ``args.resume`` with, and what changed against the run's own.

    Without ``--config`` the run's stored config is the base, so ``--resume`` alone continues the
    run as it was and ``--resume RUN training.max_steps=5000`` trains it longer.
    """
    from src.runs import CONFIG_FILE, ResumeError, check_resume, resolve_run
    from src.runs import live_owner, read_json

    output_dir = _output_dir(args)
    run_dir = resolve_run(args.resume, output_dir)
    stored_dict = read_json(run_dir / CONFIG_FILE)
    if not stored_dict:
        raise FileNotFoundError(f"cannot resume {run_dir}: it has no {CONFIG_FILE} (made by an older "
                                "version?)")
    stored = validate_config(stored_dict, source=f"{run_dir / CONFIG_FILE}")
    base = stored_dict if args.config is None else None
    requested = (validate_config(apply_overrides(base, _overrides(args)), source="resumed config")
                 if base is not None else config_from_args(args))
    requested = requested.model_copy(update={"run_id": run_dir.name, "output_dir": str(run_dir.parent)})
    changes = check_resume(stored, requested, run=str(run_dir))
    status = read_json(run_dir / "status.json")
    if status.get("status") == "completed" and not changes:
        raise ResumeError(f"{run_dir} is complete: nothing to resume (to train it longer, add e.g. "
                          f"training.max_steps={stored.training.max_steps * 2})")
    owner = live_owner(status)
    if owner:
        raise ResumeError(f"{run_dir} is still running ({owner}); stop it first, or wait for it")
    return requested, changes


def _output_dir(args: argparse.Namespace) -> Path:
    """``output_dir`` as the overrides or config file set it (where to look for the run to resume)."""
    for item in reversed(args.overrides):
        key, _, value = item.partition("=")
        if key.strip() == "output_dir":
            return Path(value)
    return Path(load_config(args.config).output_dir)


def choose_mode(args: argparse.Namespace) -> str:
    """offline (no server configured, or --offline), local (--local) or queue (--queue NAME)."""
    from src.tracking import clearml_configured

    if args.queue:
        return "queue"
    if args.local:
        return "local"
    if args.offline or not clearml_configured():
        return "offline"
    return "local"


def print_summary(cfg: ExperimentConfig, outputs: dict[str, Any], mode: str,
                  report: Path | None = None) -> None:
    from src.tasks import TASKS

    registration = outputs["register"]
    lines = ["", f"run folder:      {cfg.run_dir}", *TASKS[cfg.task].summary(cfg, outputs),
             f"model:           {registration['stage']} ({registration['reason']})"]
    if report is not None:
        lines.append(f"report:          {report}")
    if mode == "offline":
        lines += ["", "Upload the offline ClearML sessions to a server with:",
                  f"    python -m src.main import-offline {cfg.run_dir}"]
    print("\n".join(lines))


def split_resume_argument(args: argparse.Namespace) -> None:
    """``--resume`` takes an optional RUN; ``--resume model.x=1`` meant an override, not a run named so."""
    from src.runs import LATEST

    if args.resume is not None and "=" in args.resume:
        args.overrides = [args.resume, *args.overrides]
        args.resume = LATEST


def torchrun_worker_rank() -> int | None:
    """Under ``torchrun``, this process's rank when it is not rank 0 (which runs the pipeline), else None."""
    import os

    if "LOCAL_RANK" in os.environ and int(os.environ.get("RANK", "0")) != 0:
        return int(os.environ["RANK"])
    return None


def serve_torchrun_worker(args: argparse.Namespace) -> int:
    """A torchrun rank other than 0: no pipeline of its own; it joins rank 0's train step and trains."""
    from src.steps import train_worker
    from src.training.distributed import serve_as_worker
    from src.training.distributed import resolve_device

    device = ("auto" if args.resume is not None and args.config is None
              else config_from_args(args).training.device)
    logger.info(f"torchrun rank {torchrun_worker_rank()}: waiting for rank 0's train step")
    serve_as_worker(train_worker, resolve_device(device).type)
    return 0


def run_pipeline_from_cli(args: argparse.Namespace) -> int:
    from src.config import ConfigError
    from src.runs import new_run_dir

    split_resume_argument(args)
    if torchrun_worker_rank() is not None:
        return serve_torchrun_worker(args)
    if args.queue:  # an unknown queue is a usage error, before any server is asked
        from src.config.queues import load_queue_config

        load_queue_config().queue(args.queue)
        if args.resume is not None:
            raise ConfigError("--resume continues a run folder on this machine and cannot be combined with "
                              "--queue (on a server, clone the pipeline task in the web UI and enqueue it)")
    resume = args.resume is not None
    cfg, changes = resumed_config(args) if resume else (config_from_args(args), {})
    if not resume:  # a resume keeps its weights: the stored config's init_from is already a path
        from src.orchestration import resolve_sources

        # queued, a registry model stays NAME:TAG (or its id): the steps fetch it on the agent, as clones do
        cfg = resolve_sources(cfg, fetch=not args.queue)
    mode = choose_mode(args)
    if args.dry_run:
        from pipelines.pipeline import describe_pipeline

        print(describe_pipeline(cfg, queue=args.queue, use_cache=not args.no_cache))
        return 0
    if mode != "offline":
        from src.orchestration import check_server

        check_server()
    if mode == "queue":
        from pipelines.pipeline import enqueue_pipeline

        # no run_id: each step runs in its own fresh folder on an agent, and a new id in the
        # parameters would change the cache key of the data steps on every enqueue
        enqueue_pipeline(cfg, queue=args.queue, use_cache=not args.no_cache)
        return 0
    from pipelines.in_process import PipelineError, run_steps
    from src.report import try_write_report
    from src.storage import ensure_writable
    from src.training.distributed import resolve_device

    resolve_device(cfg.training.device)  # refused here, before the run folder is made or a resume rewrites it
    # before any step: a read-only, misplaced or full folder fails now, in one line, not after data prep
    if resume:
        ensure_writable(cfg.run_dir, "run folder")
    else:
        ensure_writable(cfg.output_dir, "output_dir")
    if not resume and cfg.run_id is None:
        cfg = cfg.model_copy(update={"run_id": new_run_dir(cfg.output_dir, cfg.run_name).name})
    logger.info("running the pipeline "
                f"{'offline' if mode == 'offline' else 'locally, tracked on the server'} in {cfg.run_dir}")
    try:
        outputs = run_steps(cfg, offline=True if mode == "offline" else False, resume=resume, changes=changes,
                            use_cache=not args.no_cache)
    except PipelineError as err:
        logger.error(str(err))
        if (report := try_write_report(cfg.run_dir)) is not None:  # what the run got to, for the post-mortem
            logger.info(f"report of the failed run: {report}")
        return 1
    # best effort: a warning, never a failure
    print_summary(cfg, outputs, mode, try_write_report(cfg.run_dir))
    return 0


def create_queues_cli(args: argparse.Namespace) -> int:
    from src.config.queues import load_queue_config
    from src.orchestration import ensure_queues

    queues = load_queue_config(args.file)
    if args.action == "show":
        print(queues.model_dump_json(indent=2))
        return 0
    created = ensure_queues(queues.queue_names)
    for name, queue_id in created.items():
        print(f"{name}: {queue_id}")
    return 0

