"""Command line: ``python -m src.main COMMAND ...``, one row of ``COMMANDS`` per command.

The commands: train, translate, generate, evaluate, runs, bench, data, import-offline, queues,
export, serve, report, lesson, sweep. This module only parses arguments and dispatches: every
subcommand is a ``Command`` row, a function adding its arguments and one running it, which
tests can call directly. Heavy imports (torch, clearml) happen inside the subcommands, and only the
chosen subcommand's arguments are built, so ``--help`` is instant. Every subcommand's parser is a
``CommandParser`` (``src/arguments.py``): options may come before, between or after its positional
arguments, and its usage errors print its own usage.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

if not __package__:  # run as a script (as clearml-agent does): make `src` and `pipelines` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger

from src.arguments import POSITIVE_INT, CommandParser, output_file
from src.cli_runner import emit

# The top-level --help's description: plain text, as a terminal shows it (the docstring is reStructuredText)
DESCRIPTION = ("stepwise-transformers: train a Transformer through a ClearML pipeline, then translate, "
               "generate, evaluate, export and serve with the trained run. Each command has its own --help.")


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


def _cmd_bench_finetune(args: argparse.Namespace) -> int:
    from src import bench_finetune

    try:
        text = bench_finetune.report(args)
    except (FileNotFoundError, ValueError) as err:  # a folder or IMDB file that cannot serve: one line
        logger.error("bench finetune: {}", err)
        return 1
    print(text)  # the command's output (table or JSON), for the reader or a pipe
    return 0


def _cmd_bench_attention(args: argparse.Namespace) -> int:
    from src import bench_attention

    print(bench_attention.report(args))  # the command's output (table or JSON), for the reader or a pipe
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from src.config import ConfigError
    from src import data_cli as cli

    try:
        text = cli.report(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        logger.error("data: {}", err)
        return 1
    print(text)  # the command's output: the corpus figures as JSON
    return 0


def _cmd_import_offline(args: argparse.Namespace) -> int:
    from src.runs import import_offline_cli, resolve_run

    run = args.run_dir
    if not Path(run).exists():  # a run id, a run name or 'latest'; a folder or session zip is taken as it is
        run = str(resolve_run(run, args.runs_dir))
    return import_offline_cli(run)


def _cmd_translate(args: argparse.Namespace) -> int:
    from src.inference.cli import translate_command

    for line in translate_command(args):  # one translation per line, each as soon as it is made (for a pipe)
        print(line, flush=True)  # the command's output
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from src.inference.generate import generate_command

    print(generate_command(args))  # the command's output: the prompt and its continuation
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from src.inference.cli import evaluate_command

    print(evaluate_command(args))  # the command's output: the metrics
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from src.runs.table import runs_compare, runs_list

    if args.action == "list" and args.runs:
        raise ValueError(f"runs list takes no run names (got {args.runs}); "
                         f"did you mean: runs compare {' '.join(args.runs)}")
    if args.action == "list" and args.html:
        raise ValueError("runs list takes no --html; the page compares runs: runs compare A B --html FILE")
    print(runs_list(args.runs_dir) if args.action == "list" else runs_compare(args.runs, args.runs_dir))
    if args.html:
        from src.report.compare import write_comparison
        from src.runs.table import compare_runs

        path = write_comparison(compare_runs(args.runs, args.runs_dir), Path(args.html))
        print(f"comparison page: {path}")  # the command's output: where the page is
    return 0


def _cmd_queues(args: argparse.Namespace) -> int:
    from pipelines.run import create_queues_cli

    return create_queues_cli(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from src.export import cli

    return emit(*cli.command(args))  # the command's output: the export folder


def _cmd_serve(args: argparse.Namespace) -> int:
    from src.serving import cli

    return emit(*cli.command(args))  # the server logs; it has no output of its own


def _cmd_report(args: argparse.Namespace) -> int:
    from src.report import cli

    return emit(*cli.command(args))  # the command's output: the report's path


def _cmd_lesson(args: argparse.Namespace) -> int:
    from src.lessons import cli

    return emit(*cli.command(args))  # the lesson list, or nothing: a lesson draws on the console


def _cmd_sweep(args: argparse.Namespace) -> int:
    from src.tuning import cli

    return emit(*cli.command(args))  # the command's output: the trials, the study and the best config


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser)
    parser.add_argument("--project-name", default=None,
                        help="ClearML project (overrides tracking.project_name)")
    parser.add_argument("--task-name", default=None, help="ClearML task name (overrides tracking.task_name)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true",
                      help="force ClearML offline mode (the default without a server)")
    mode.add_argument("--local", action="store_true",
                      help="run steps as local processes tracked on the server")
    mode.add_argument("--queue", default=None,
                      help="enqueue the pipeline; the queue set named in queues/ (e.g. gpu)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the DAG, queues and parameters; run nothing")
    parser.add_argument("--no-cache", action="store_true",
                        help="run data prep and tokenization again even when an earlier run in output_dir "
                             "(or, with --queue, ClearML's step cache) holds them for the same data and "
                             "tokenizer settings")
    parser.add_argument("--nproc", type=POSITIVE_INT, default=1, metavar="N",
                        help="data-parallel training on N local processes (gloo on CPU, NCCL on CUDA; "
                             "default 1); the global batch stays the config's grad_accum_steps "
                             "micro-batches, dealt out to the ranks, so it must be a multiple of nodes x N: "
                             "add training.grad_accum_steps=2 for --nproc 2")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                        help="continue a run (default: the latest) from its last good checkpoint; without "
                             "--config its own config, plus any overrides that only change training")


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench [flags]``: our Transformer against nn.Transformer;
    ``bench attention [flags]``: attention scaling; ``bench finetune --init-from FOLDER``: against Hugging
    Face's BERT classifier."""
    from src import bench_attention, bench_cli

    bench_cli.add_arguments(parser)
    benchmarks = parser.add_subparsers(
        dest="benchmark", metavar="{attention,finetune}", required=False,
        help="a sub-benchmark (default: the Transformer against nn.Transformer)")
    help_text = "time and peak memory of attention variants against sequence length, with log-log slopes"
    attention = benchmarks.add_parser("attention", help=help_text, description=help_text)
    bench_attention.add_arguments(attention)
    attention.set_defaults(handler=_cmd_bench_attention)
    help_text = ("fine-tuning throughput of our encoder classifier against Hugging Face's "
                 "BertForSequenceClassification on the same weights and IMDB batches")
    finetune = benchmarks.add_parser("finetune", help=help_text, description=help_text)
    bench_cli.add_finetune_arguments(finetune)
    finetune.set_defaults(handler=_cmd_bench_finetune)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from src import data_cli as cli

    cli.add_arguments(parser)


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", default="latest",
                        help="run folder printed at the end of an offline run, a run id or name, 'latest' "
                             "(the default), or a session zip")
    parser.add_argument("--runs-dir", default="runs", help="where run ids and names are looked up")


def _add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    from src.inference.cli import add_translate_arguments

    add_translate_arguments(parser)


def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from src.inference.generate import add_generate_arguments

    add_generate_arguments(parser)


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from src.inference.cli import add_evaluate_arguments

    add_evaluate_arguments(parser)


def _add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "compare"],
                        help="list the runs, or compare some side by side")
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="runs to compare: folders, ids, names or 'latest'")
    parser.add_argument("--runs-dir", default="runs", help="folder holding the runs (default: runs)")
    parser.add_argument("--html", type=output_file, default=None, metavar="FILE",
                        help="compare: also write one self-contained HTML page with the runs' results, their "
                             "config differences and their training curves overlaid")


def _add_queues_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "show"],
                        help="create the queues on the server (idempotent)")
    parser.add_argument("--file", default="queues/queues.yaml", help="queue definitions")


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from src.export import cli

    cli.add_arguments(parser)


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from src.serving import cli

    cli.add_arguments(parser)


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from src.report import cli

    cli.add_arguments(parser)


def _add_lesson_arguments(parser: argparse.ArgumentParser) -> None:
    from src.lessons import cli

    cli.add_arguments(parser)


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from src.tuning import cli

    cli.add_arguments(parser)


class Command(NamedTuple):
    """One subcommand: its help line, what adds its arguments, and what runs it (-> exit status).

    Both functions import their module only when the subcommand is chosen, so ``--help`` stays fast.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "train": Command("run the whole pipeline: data prep, tokenize, train, evaluate, register",
                     _add_train_arguments, _cmd_train),
    "translate": Command("translate sentences with a trained run or checkpoint",
                         _add_translate_arguments, _cmd_translate),
    "generate": Command("continue a prompt with a trained language model",
                        _add_generate_arguments, _cmd_generate),
    "evaluate": Command("score a run or checkpoint on its test/valid split or a file of its kind",
                        _add_evaluate_arguments, _cmd_evaluate),
    "runs": Command("list the runs, or compare runs side by side", _add_runs_arguments, _cmd_runs),
    "bench": Command("benchmark our Transformer against torch.nn.Transformer; "
                     "bench attention: attention scaling; bench finetune: against Hugging Face's BERT "
                     "classifier", _add_bench_arguments, _cmd_bench),
    "data": Command("prepare and tokenize the corpus, print its figures", _add_data_arguments, _cmd_data),
    "import-offline": Command("upload a run's offline ClearML sessions to the server",
                              _add_import_arguments, _cmd_import_offline),
    "queues": Command("create or show the ClearML queues of queues/queues.yaml",
                      _add_queues_arguments, _cmd_queues),
    "export": Command("export a run or checkpoint to ONNX graphs and a Triton model repository",
                      _add_export_arguments, _cmd_export),
    "serve": Command("serve a run, checkpoint or registered model over HTTP (FastAPI)",
                     _add_serve_arguments, _cmd_serve),
    "report": Command("write a run's self-contained HTML report", _add_report_arguments, _cmd_report),
    "lesson": Command("guided lessons on the real components; no name: list them",
                      _add_lesson_arguments, _cmd_lesson),
    "sweep": Command("hyperparameter search: optuna trials offline or locally, "
                     "ClearML's optimizer on agent queues", _add_sweep_arguments, _cmd_sweep),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommand it names gets its arguments (they may import torch).

    Each subcommand's parser is a ``CommandParser``: its options may come before, between or after
    its positional arguments, and a usage error prints that subcommand's usage, not this one's.
    """
    parser = CommandParser(prog="python -m src.main", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    from src.config import ConfigError
    from src.orchestration import ServerError

    try:
        return args.handler(args)
    except ConfigError as err:
        logger.error(str(err))
        return 2
    except ServerError as err:  # unreachable or misconfigured ClearML server: say so, no traceback
        logger.error(str(err))
        return 3
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # a missing run or file, bad input
        logger.error(f"{args.command}: {err}")
        return 1
    except BrokenPipeError:  # an OSError: before the handler below
        if not _reader_left(sys.stdout):
            raise  # another pipe (a socket, a child process): not ours to hide
        # our reader left (`translate ... | head -1`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail
        return 141  # 128 + SIGPIPE: what a shell shows for a tool stopped by a closed pipe
    except OSError as err:  # a read-only or misplaced folder, a full disk: one line; others are bugs
        from src.storage import user_line

        if (line := user_line(err)) is None:
            raise
        logger.error(f"{args.command}: {line}")
        return 1
    except KeyboardInterrupt:
        logger.warning("interrupted; the last checkpoint is kept, continue with --resume")
        return 130


def _reader_left(stream) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (poll reports an error on its writing end)."""
    import select

    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's capture), or no poll
        return False


if __name__ == "__main__":
    sys.exit(main())
