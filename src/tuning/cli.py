"""``sweep`` subcommand: hyperparameter search over a space of config keys.

``python -m src.main sweep --config FILE --trials N [--space FILE] [--queue QUEUE] [--study-name NAME]
[--output-dir DIR] [overrides]``

Without ``--queue`` the trials run here, one after another, with optuna (seeded TPE sampler,
median pruner on the validation metric at each evaluation); each trial is its own ClearML task
(an offline session without a server) in ``<project>/sweep-<study>``, and the sweep folder holds
the study (sqlite), the trials table and ``best_config.yaml`` for ``train --config``. With
``--queue`` ClearML's ``HyperParameterOptimizer`` (``OptimizerOptuna``) clones the train step's task
of an earlier run on the server once per trial and enqueues the clones for agents.
"""

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from src.arguments import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, SEED, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="base config, YAML/JSON (default: config/default_config.*)")
    parser.add_argument("--trials", type=POSITIVE_INT, required=True,
                        help="trials to run (added to the study if it exists)")
    parser.add_argument("--space", default=None, help="search space YAML (default: config/sweep_space.yaml)")
    parser.add_argument("--queue", default=None,
                        help="run the trials on this agent queue with ClearML's optimizer (needs a server)")
    parser.add_argument("--study-name", default=None,
                        help="the study's name (default: the config's run_name)")
    parser.add_argument("--output-dir", type=output_folder, default=None,
                        help="where the sweep folder <study>/ goes (default: <output_dir>/sweeps)")
    parser.add_argument("--metric", default="loss",
                        help="validation series to optimise (default: loss; accuracy-like metrics are "
                             "maximised)")
    parser.add_argument("--seed", type=SEED, default=0, help="the TPE sampler's seed (default: 0)")
    parser.add_argument("--startup-trials", type=NON_NEGATIVE_INT, default=2,
                        help="trials that complete before the median pruner prunes (default: 2)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not run the base config's own values as the study's first trial")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="record the local trials as offline sessions even with a server configured")
    parser.add_argument("--threads", type=POSITIVE_INT, default=None, help="torch threads for local trials")
    parser.add_argument("--base-task", default=None,
                        help="with --queue: the task to clone (default: the newest <task_name>-train in the "
                             "project)")
    parser.add_argument("--concurrency", type=POSITIVE_INT, default=2,
                        help="with --queue: trials queued at once (default: 2)")
    parser.add_argument("--time-limit", type=POSITIVE_NUMBER, default=None,
                        help="with --queue: minutes before the optimizer stops and aborts what still runs")
    parser.add_argument("--pool-period", type=POSITIVE_NUMBER, default=0.5,
                        help="with --queue: minutes between the optimizer's looks at its trials (default: "
                             "0.5)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted overrides of the base config")


def command(args: argparse.Namespace) -> tuple[int, str]:
    from src.experiment import load_config
    from src.tuning.space import load_space
    from src.tuning.trial import direction_of

    cfg = load_config(args.config, args.overrides)
    space = load_space(args.space, cfg)
    study = args.study_name or cfg.run_name
    direction = direction_of(args.metric)
    with contextlib.redirect_stdout(sys.stderr):  # ClearML prints its own lines; stdout is the command's
        if args.queue is not None:
            result = _queue_sweep(args, cfg, space, study, direction)
        else:
            result = _local_sweep(args, cfg, space, study, direction)
    # the command's output: the trials and where the study and best config are
    return result.code, result.text


@dataclass(frozen=True)
class Outcome:
    text: str
    code: int


def _local_sweep(args, cfg, space, study: str, direction: str) -> Outcome:
    from src.tuning.study import run_local_sweep
    from src.tuning.trial import TrialSettings

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.output_dir) if args.output_dir else Path(cfg.output_dir) / "sweeps"
    settings = TrialSettings(base=cfg, space=space, study=study, sweep_dir=out / study, metric=args.metric,
                             direction=direction, offline=True if args.offline else None)
    result = run_local_sweep(settings, args.trials, seed=args.seed, startup_trials=args.startup_trials,
                             baseline=not args.no_baseline)
    states = [row["state"] for row in result.rows]
    logger.info(f"sweep {study}: {len(states)} trials in the study: " +
                ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states))))
    text = (f"{_table(result.rows, args.metric)}\nstudy:       {result.study_file}\n"
            f"trials:      {result.trials_csv}\n"
            f"best config: {result.best_config or 'none (no trial completed)'}")
    return Outcome(text, 0 if result.best_config is not None else 1)


def _queue_sweep(args, cfg, space, study: str, direction: str) -> Outcome:
    from src.orchestration import (
        OptimizerRun,
        SearchParameter,
        refuse_log_integers,
        require_server,
        run_clearml_optimizer,
        task_parameter_name,
    )

    params = tuple(SearchParameter(task_parameter_name(key), rng.low, rng.high, rng.log, rng.integer,
                                   rng.step,
                                   tuple(rng.choices) if rng.choices is not None else None)
                   for key, rng in space.params.items())
    # before any server call: nothing is cloned for a space the queue cannot search
    refuse_log_integers(params)
    require_server(cfg.tracking)
    result = run_clearml_optimizer(OptimizerRun(
        tracking=cfg.tracking, study=study, base_task_id=args.base_task,
        base_task_name=f"{cfg.tracking.task_name}-train",
        params=params, metric_title="valid", metric_series=args.metric, direction=direction, queue=args.queue,
        # trial length: the base task's max_steps
        trials=args.trials, concurrency=args.concurrency, seed=args.seed,
        startup_trials=args.startup_trials, time_limit_min=args.time_limit, pool_period_min=args.pool_period,
    ))
    return Outcome(json.dumps(result, indent=2, default=str), 0)  # base task, optimizer task, top trials


def _table(rows: list[dict], metric: str) -> str:
    keys = sorted({key for row in rows for key in row["params"]})
    head = ["#", "state", f"valid {metric}", "steps", "seconds", *keys]
    lines = [head]
    for row in rows:
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        lines.append([str(row["number"]) + ("*" if row["baseline"] else ""), row["state"].lower(), value,
                      str(row["steps"] if row["steps"] is not None else "-"), str(row["duration_s"] or "-"),
                      *[_short(row["params"].get(k)) for k in keys]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text + ["(* the base config's own values)"] * any(row["baseline"] for row in rows))


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
