"""``serve`` subcommand: ``python -m src.main serve RUN_OR_CHECKPOINT_OR_MODEL [--host --port ...]``.

The model is fetched and loaded before the server starts: one that cannot be loaded stops the
command with one line, not the first request. uvicorn then serves until SIGTERM or Ctrl-C, when
it stops accepting connections, lets the requests in flight finish (``graceful_shutdown_s``),
and the app drains its micro-batcher.
"""

import argparse

from loguru import logger

from src.arguments import PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_OR_CHECKPOINT_OR_MODEL",
                        help="a run folder, run id or name, 'latest', a checkpoint file, a registered model "
                             "NAME:TAG (or NAME with --tag), or a ClearML model id")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default from the config: 127.0.0.1)")
    parser.add_argument("--port", type=PORT, default=None,
                        help="port (default from the config: 8000; 0: any free port)")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default=None,
                        help="run the model on PyTorch, ONNX Runtime, or ONNX Runtime with int8 linear "
                             "layers "
                             "(default from the config: torch)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="auto, cpu or cuda (default from the config: auto)")
    parser.add_argument("--tag", default=None,
                        help="with a registered model's NAME: the tag to pick (e.g. production)")
    parser.add_argument("--project", default=None,
                        help="with a registered model's NAME: the ClearML project to look in (default: the "
                             "default config's tracking.project_name; '' for every project)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--config", default=None, help="serving config (default: config/serving.yaml)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="uvicorn's own log level (default: info)")


def command(args: argparse.Namespace) -> tuple[int, str]:
    import os

    import uvicorn

    # the decoding loop's progress bar, once per batch, is noise in a server log
    os.environ.setdefault("TQDM_DISABLE", "1")

    from src.config.serving import load_serving_config
    from src.serving.app import create_app
    from src.serving.predictor import Preprocess
    from src.serving.protocol import deadline_protocol
    from src.serving.sources import resolve_source

    bounded_log()

    config = load_serving_config(args.config, host=args.host, port=args.port, backend=args.backend,
                                 device=args.device)
    source = resolve_source(args.model, args.runs_dir, args.tag, config.model_fetch_timeout_s,
                            project=registry_project(args.project))
    predictor = Preprocess(config)
    predictor.load(str(source.checkpoint))
    app = create_app(predictor, source.info)
    server = logging_server(uvicorn.Config(app, host=config.host, port=config.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=config.graceful_shutdown_s,
                                           access_log=False,
                                           http=deadline_protocol(config.request_timeout_s),
                                           timeout_keep_alive=config.keep_alive_s,
                                           h11_max_incomplete_event_size=config.max_header_bytes),
                            f"{source.checkpoint} ({predictor.trained.family})")
    server.run()
    return (0 if server.started else 1), ""  # the server logs; it has no output of its own


def bounded_log() -> None:
    """loguru to stderr without its defaults ``diagnose=True`` and ``backtrace=True``.

    Those print every frame's local variables and the frames above the catch: about 230 lines per
    failed request, and the values of request bodies in the log. A server logs tracebacks bounded
    (``src/serving/request_log.py``), without variables.
    """
    import sys

    logger.remove()
    logger.add(sys.stderr, level="DEBUG", backtrace=False, diagnose=False)  # loguru's default level


def logging_server(config, what: str):
    """A ``uvicorn.Server`` that logs the address it listens on once bound: the real port, also for
    ``--port 0``."""
    import uvicorn

    class LoggingServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                logger.info("serving {} on {}", what, ", ".join(bound_urls(self)))

    return LoggingServer(config)


def registry_project(given: str | None) -> str | None:
    """The ClearML project a ``NAME:TAG`` lookup searches: ``--project``, else the default config's; '' means
    all."""
    if given is not None:
        return given or None
    from src.experiment import load_config

    return load_config().tracking.project_name


def bound_urls(server) -> list[str]:
    """``http://host:port`` of each socket uvicorn listens on: the real port, also when asked for port 0."""
    urls = []
    for listener in server.servers:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            urls.append(f"http://{f'[{host}]' if ':' in host else host}:{port}")
    return urls
