"""Command line: ``python -m src.main {train,bench,data,evaluate,import-offline,queues} ...``.

This module only parses arguments and dispatches; each subcommand calls one function that tests
can call directly. Heavy imports (torch, clearml) happen inside the subcommands so ``--help`` is
instant.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if not __package__:  # run as a script (as clearml-agent does): make `src` and `pipelines` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML/JSON config (default: config/default_config.*)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="dotted overrides, type-checked against the config schema, e.g. model.d_model=512",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from pipelines.run import run_pipeline_from_cli

    return run_pipeline_from_cli(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from src import bench

    print(bench.report(args))  # the command's output (table or JSON), for the reader or a pipe
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from src.config import ConfigError
    from src.data import cli

    try:
        text = cli.report(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        logger.error("data: {}", err)
        return 1
    print(text)  # the command's output: the corpus figures as JSON
    return 0


def _cmd_import_offline(args: argparse.Namespace) -> int:
    from src.tracking.offline import import_offline_cli

    return import_offline_cli(args.run_dir)


def _cmd_queues(args: argparse.Namespace) -> int:
    from pipelines.run import create_queues_cli

    return create_queues_cli(args)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser)
    parser.add_argument("--project-name", default=None, help="ClearML project (overrides tracking.project_name)")
    parser.add_argument("--task-name", default=None, help="ClearML task name (overrides tracking.task_name)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="force ClearML offline mode (the default without a server)")
    mode.add_argument("--local", action="store_true", help="run steps as local processes tracked on the server")
    mode.add_argument("--queue", default=None, help="enqueue the pipeline; the queue set named in queues/ (e.g. gpu)")
    parser.add_argument("--dry-run", action="store_true", help="print the DAG, queues and parameters; run nothing")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's last good checkpoint")


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from src import bench

    bench.add_arguments(parser)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from src.data import cli

    cli.add_arguments(parser)


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder printed at the end of an offline run, e.g. runs/default")


def _add_queues_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "show"], help="create the queues on the server (idempotent)")
    parser.add_argument("--file", default="queues/queues.yaml", help="queue definitions")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("run the whole pipeline: data prep, tokenize, train, evaluate, register", _add_train_arguments, _cmd_train),
    "bench": ("benchmark our Transformer against torch.nn.Transformer", _add_bench_arguments, _cmd_bench),
    "data": ("prepare and tokenize the corpus, print its figures", _add_data_arguments, _cmd_data),
    "import-offline": ("upload a run's offline ClearML sessions to the server", _add_import_arguments, _cmd_import_offline),
    "queues": ("create or show the ClearML queues of queues/queues.yaml", _add_queues_arguments, _cmd_queues),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.main", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from src.config import ConfigError
    from src.tracking.server import ServerError

    try:
        return args.handler(args)
    except ConfigError as err:
        logger.error(str(err))
        return 2
    except ServerError as err:  # unreachable or misconfigured ClearML server: say so, no traceback
        logger.error(str(err))
        return 3
    except KeyboardInterrupt:
        logger.warning("interrupted; the last checkpoint is kept, continue with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
