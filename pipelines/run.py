"""``python -m src.main train``: choose the mode (offline, local, queue, dry run) and run it."""

import argparse
from typing import Any

from loguru import logger

from src.config import ExperimentConfig, load_config


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    overrides = list(args.overrides)
    if args.project_name:
        overrides.append(f"tracking.project_name={args.project_name}")
    if args.task_name:
        overrides.append(f"tracking.task_name={args.task_name}")
    return load_config(args.config, overrides)


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


def print_summary(cfg: ExperimentConfig, outputs: dict[str, Any], mode: str) -> None:
    metrics = outputs["evaluate"]["metrics"]
    registration = outputs["register"]
    lines = [
        "",
        f"run folder:      {cfg.run_dir}",
        f"test BLEU:       {metrics['beam']['bleu']:.2f} (beam {cfg.evaluation.beam_size}), "
        f"{metrics['greedy']['bleu']:.2f} (greedy)",
        f"test chrF:       {metrics['beam']['chrf']:.2f}",
        f"test perplexity: {metrics['test']['perplexity']:.2f}",
        f"model:           {registration['stage']} ({registration['reason']})",
    ]
    if mode == "offline":
        lines += ["", "Upload the offline ClearML sessions to a server with:",
                  f"    python -m src.main import-offline {cfg.run_dir}"]
    print("\n".join(lines))


def run_pipeline_from_cli(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    mode = choose_mode(args)
    if args.dry_run:
        from pipelines.pipeline import describe_pipeline

        print(describe_pipeline(cfg, queue=args.queue))
        return 0
    if mode != "offline":
        from src.tracking.server import check_server

        check_server()
    if mode == "queue":
        from pipelines.pipeline import enqueue_pipeline

        enqueue_pipeline(cfg, queue=args.queue)
        return 0
    from pipelines.offline import run_steps

    logger.info(f"running the pipeline {'offline' if mode == 'offline' else 'locally, tracked on the server'}")
    try:
        outputs = run_steps(cfg, offline=True if mode == "offline" else False, resume=args.resume)
    except Exception as err:
        logger.error(f"pipeline failed: {type(err).__name__}: {err} (details in {cfg.run_dir / 'status.json'})")
        return 1
    print_summary(cfg, outputs, mode)
    return 0


def create_queues_cli(args: argparse.Namespace) -> int:
    from src.tracking.server import ensure_queues, load_queue_config

    queues = load_queue_config(args.file)
    if args.action == "show":
        print(queues.model_dump_json(indent=2))
        return 0
    created = ensure_queues(queues.queue_names)
    for name, queue_id in created.items():
        print(f"{name}: {queue_id}")
    return 0

