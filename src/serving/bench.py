"""Load benchmark of the server over real HTTP: ``python -m src.serving.bench RUN [--requests N] [--concurrency 1 16]``.

Starts ``python -m src.main serve RUN`` in a subprocess twice, with micro-batching on (the
serving config's window and batch size) and off (``max_batch_size: 1``), and at each concurrency
sends ``--requests`` requests of one sentence each from that many client threads (keep-alive
connections, after a warm-up). Reports sentences/s and p50/p99 latency per mode and concurrency,
and the speed-up of batching at the highest concurrency over sequential requests (concurrency 1,
the faster of the two modes), the figure the issue's target (>= 3x at concurrency 16) is about.

Sentences come from ``--texts FILE`` (one per line), else the run's own test split
(``src/runs/folders.py::run_test_sentences``), else a built-in list; the report says which.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from src.cli_runner import run_module_command

REPO_ROOT = Path(__file__).resolve().parents[2]
FALLBACK = ["Ich habe keine Zeit.", "Das ist gut.", "Wir gehen nach Hause.", "Er liest ein Buch.",
            "Wo ist der Bahnhof?", "Die Katze schläft auf dem Sofa.", "Es regnet seit gestern Abend.",
            "Sie trinkt jeden Morgen einen Kaffee.", "Kannst du mir bitte helfen?",
            "Der Zug fährt um acht Uhr ab."]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run, run id or name, 'latest', a checkpoint, or a registered model "
                                    "(as serve)")
    parser.add_argument("--requests", type=int, default=400,
                        help="requests per concurrency level (default 400)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16],
                        help="client threads (default: 1 16)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch")
    parser.add_argument("--beam", type=int, default=1,
                        help="beam of each translation request (default 1: greedy)")
    parser.add_argument("--config", default=None,
                        help="serving config both modes start from (default: config/serving.yaml)")
    parser.add_argument("--texts", default=None, help="file of sentences, one per line")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="OMP_NUM_THREADS of the server (default: PyTorch's own choice)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def sentences(args: argparse.Namespace) -> tuple[list[str], str]:
    """``--texts``, else the run's test split (``src/runs/folders.py::run_test_sentences``), else
    ``FALLBACK``; and which."""
    if args.texts:
        text = Path(args.texts).read_text(encoding="utf-8")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{args.texts} holds no sentences (expected one per line)")
        return lines, args.texts
    from src.runs import resolve_checkpoint, run_dir_of_checkpoint
    from src.runs.folders import RunNotFoundError, run_test_sentences

    try:
        run_dir = run_dir_of_checkpoint(resolve_checkpoint(args.run, args.runs_dir))
    except RunNotFoundError:  # a registered model: no run folder here
        run_dir = None
    texts, folder = run_test_sentences(run_dir, 2000)
    return (texts, f"{folder} (test split)") if texts else (FALLBACK, "built-in sentences")


def request_body(task: str, text: str, beam: int, i: int) -> dict[str, Any]:
    if task == "translate":
        return {"texts": [text], "beam": beam}
    if task == "classify":
        return {"texts": [text]}
    return {"prompt": text[:200], "max_new_tokens": 32, "seed": i}


class Server:
    """The serve command in its own process group, on a free loopback port, until ``stop``."""

    def __init__(self, args: argparse.Namespace, config: Path, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "src.main", "serve", args.run, "--runs-dir", args.runs_dir, "--port",
                 str(self.port), "--backend", args.backend, "--config", str(config), "--log-level",
                 "warning"],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited with "
                                   f"{self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)  # between polls, whatever the answer (a 503 must not spin)
        raise RuntimeError(f"no /health answer within {timeout:g} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def load(url: str, task: str, texts: list[str], n: int, concurrency: int, beam: int) -> dict[str, Any]:
    """``n`` one-sentence requests from ``concurrency`` threads: sentences/s, p50/p99 latency, errors.

    Each client thread holds one keep-alive connection of the standard library's ``http.client``: a load
    generator should cost the machine little (as wrk does), since here it shares the server's cores. httpx
    spends about 1 ms of Python per request, which at 16 clients is CPU the server then lacks.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [json.dumps(request_body(task, texts[i % len(texts)], beam, i)).encode() for i in range(n)]
    headers = {"content-type": "application/json"}

    def client(indices: list[int]) -> list[tuple[float, int]]:
        out = []
        connection = http.client.HTTPConnection(host, int(port), timeout=300)
        try:
            for i in indices:
                start = time.perf_counter()
                connection.request("POST", f"/v1/{task}", body=bodies[i], headers=headers)
                answer = connection.getresponse()
                answer.read()  # the whole answer, so that the connection can be reused
                out.append((time.perf_counter() - start, answer.status))
        finally:
            connection.close()
        return out

    with ThreadPoolExecutor(concurrency) as pool:  # warm-up: connections, first-call allocations
        list(pool.map(client, [[i] for i in range(concurrency)]))
        start = time.perf_counter()
        results = [r for part in pool.map(
            client, [list(range(k, n, concurrency)) for k in range(concurrency)])
                   for r in part]
        wall = time.perf_counter() - start
    latencies = sorted(seconds * 1000 for seconds, _ in results)
    return {"concurrency": concurrency, "requests": n, "errors": sum(status != 200 for _, status in results),
            "sentences_per_s": round(n / wall, 2), "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Both modes at every concurrency; the batching speed-up at the highest one."""
    import httpx

    from src.config.files import read_config_file
    from src.config.serving import SERVING_CONFIG_PATH

    base = read_config_file(args.config or SERVING_CONFIG_PATH)
    texts, text_source = sentences(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        for mode, overrides in (("batching on", {}), ("batching off", {"max_batch_size": 1})):
            config = Path(tmp) / f"{mode.replace(' ', '_')}.yaml"
            config.write_text(yaml.safe_dump({**base, **overrides}))
            server = Server(args, config, Path(tmp) / f"{mode.replace(' ', '_')}.log")
            try:
                server.wait_healthy(timeout=600)
                info = httpx.get(f"{server.url}/v1/model", timeout=10).json()
                for concurrency in args.concurrency:
                    rows.append({"mode": mode,
                                 **load(server.url, info["task"], texts, args.requests, concurrency,
                                                      args.beam)})
            finally:
                server.stop()
    top = max(args.concurrency)
    rate = {(r["mode"], r["concurrency"]): r["sentences_per_s"] for r in rows}
    ones = [rate[(mode, 1)] for mode in ("batching on", "batching off") if (mode, 1) in rate]
    sequential = max(ones, default=None)  # the better of the two modes, one client at a time
    speedup = round(rate[("batching on", top)] / sequential, 2) if sequential else None
    return {"model": args.run, "task": info["task"], "family": info["family"], "backend": args.backend,
            "sentence_source": text_source, "window_ms": base.get("batch_window_ms"),
            "max_batch_size": base.get("max_batch_size"), "rows": rows,
            f"speedup_batching_c{top}_over_sequential": speedup,
            f"speedup_batching_on_over_off_c{top}": round(
                rate[("batching on", top)] / rate[("batching off", top)], 2)}


def report(result: dict[str, Any]) -> str:
    lines = [(f"{result['model']} ({result['family']}, {result['backend']}), micro-batching window "
              f"{result['window_ms']} ms, max batch {result['max_batch_size']}, sentences from "
              f"{result.get('sentence_source', 'built-in sentences')}"),
             (f"{'mode':<14}{'clients':>8}{'requests':>10}{'errors':>8}{'sentences/s':>13}"
              f"{'p50 ms':>9}{'p99 ms':>9}")]
    for r in result["rows"]:
        lines.append(f"{r['mode']:<14}{r['concurrency']:>8}{r['requests']:>10}{r['errors']:>8}"
                     f"{r['sentences_per_s']:>13}{r['p50_ms']:>9}{r['p99_ms']:>9}")
    lines += [f"{key}: {value}x" for key, value in result.items() if key.startswith("speedup")]
    return "\n".join(lines)


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status (1 if any request failed) and output (JSON or the table) of
    ``python -m src.serving.bench``."""
    result = bench(args)
    status = 0 if not any(r["errors"] for r in result["rows"]) else 1
    return status, json.dumps(result, indent=2) if args.json else report(result)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.serving.bench", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
