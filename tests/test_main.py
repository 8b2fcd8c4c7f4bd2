"""The command line itself: instant help without torch, and usage errors before any server is asked."""

import importlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "translate", "evaluate", "runs", "bench", "data", "import-offline", "queues")


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys, contextlib, io; from src.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print('torch' in sys.modules, 'clearml' in sys.modules); print(out.getvalue())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    flags, _, text = proc.stdout.partition("\n")
    assert flags == "False False", proc.stdout + proc.stderr
    assert all(name in text for name in COMMANDS)


def test_help_takes_under_a_second():
    best = min(_timed([sys.executable, "-m", "src.main", "--help"]) for _ in range(3))
    assert best < 1.0, f"--help took {best:.2f} s"
    assert min(_timed([sys.executable, "-m", "src.main", "train", "--help"]) for _ in range(3)) < 1.0


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, capture_output=True, check=True, timeout=60)
    return time.perf_counter() - start


def test_an_unknown_queue_is_rejected_before_any_server_check(tmp_path):
    env = clean_env(tmp_path / "home", CLEARML_API_HOST="http://127.0.0.1:9", CLEARML_WEB_HOST="http://127.0.0.1:9",
                    CLEARML_FILES_HOST="http://127.0.0.1:9", CLEARML_API_ACCESS_KEY="k",
                    CLEARML_API_SECRET_KEY="s")
    proc = run_src_main(["train", "--config", "config/tiny.yaml", "--queue", "nosuch"], env, timeout=60)
    assert proc.returncode == 2
    assert "unknown queue 'nosuch', expected one of ['cpu', 'gpu', 'services']" in proc.stderr
    assert "127.0.0.1:9" not in proc.stderr  # the server was never asked


def test_a_missing_run_is_one_line_naming_what_exists(tmp_path):
    proc = run_src_main(["translate", "nosuch", "Hallo.", "--runs-dir", str(tmp_path)],
                        clean_env(tmp_path / "h"), 60)
    assert proc.returncode == 1
    assert "translate: no run 'nosuch'" in proc.stderr and "Traceback" not in proc.stderr


# Each subcommand with its positionals and options in three orders: options first, between, last.
# Every subcommand of COMMANDS has a row (checked below), so a new one cannot miss the property.
ORDERS = {
    "train": [["--config", "c.yaml", "--dry-run", "a.b=1", "c.d=2"],
              ["a.b=1", "--config", "c.yaml", "c.d=2", "--dry-run"],
              ["a.b=1", "c.d=2", "--config", "c.yaml", "--dry-run"]],
    "translate": [["--backend", "onnx", "--beam", "2", "latest", "Das ist gut.", "Hallo."],
                  ["latest", "--backend", "onnx", "Das ist gut.", "--beam", "2", "Hallo."],
                  ["latest", "Das ist gut.", "Hallo.", "--backend", "onnx", "--beam", "2"]],
    "generate": [["--temperature", "0", "--seed", "3", "latest", "Once"],
                 ["latest", "--temperature", "0", "Once", "--seed", "3"],
                 ["latest", "Once", "--temperature", "0", "--seed", "3"]],
    "evaluate": [["--max-sentences", "5", "--split", "valid", "r1"],
                 ["r1", "--max-sentences", "5", "--split", "valid"],
                 ["--split", "valid", "r1", "--max-sentences", "5"]],
    "runs": [["--runs-dir", "x", "compare", "a", "b"], ["compare", "a", "--runs-dir", "x", "b"],
             ["compare", "a", "b", "--runs-dir", "x"]],
    "bench": [["--json", "--repeats", "2"], ["--repeats", "2", "--json"], ["--json", "--repeats=2"]],
    "data": [["--out-dir", "o", "a.b=1", "c.d=2"], ["a.b=1", "--out-dir", "o", "c.d=2"],
             ["a.b=1", "c.d=2", "--out-dir", "o"]],
    "import-offline": [["--runs-dir", "x", "r1"], ["r1", "--runs-dir", "x"], ["r1", "--runs-dir=x"]],
    "queues": [["--file", "q.yaml", "show"], ["show", "--file", "q.yaml"], ["show", "--file=q.yaml"]],
    "export": [["--out", "o", "--runs-dir", "x", "r1"], ["--out", "o", "r1", "--runs-dir", "x"],
               ["r1", "--out", "o", "--runs-dir", "x"]],
    "serve": [["--port", "0", "--backend", "onnx", "r1"], ["--port", "0", "r1", "--backend", "onnx"],
              ["r1", "--port", "0", "--backend", "onnx"]],
    "report": [["--out", "r.html", "r1"], ["r1", "--out", "r.html"], ["r1", "--out=r.html"]],
    "lesson": [["--no-track", "--output-dir", "o", "attention"],
               ["--no-track", "attention", "--output-dir", "o"],
               ["attention", "--no-track", "--output-dir", "o"]],
    "sweep": [["--trials", "3", "--seed", "1", "a.b=1", "c.d=2"],
              ["a.b=1", "--trials", "3", "c.d=2", "--seed", "1"],
              ["a.b=1", "c.d=2", "--trials", "3", "--seed", "1"]],
}


def _parse(argv: list[str]):
    from src.main import build_parser

    return build_parser(argv).parse_args(argv)


def test_options_may_come_before_between_or_after_the_positionals_in_every_subcommand():
    from src.main import COMMANDS

    assert set(ORDERS) == set(COMMANDS)
    for name, orders in ORDERS.items():
        parsed = [vars(_parse([name, *argv])) for argv in orders]
        assert parsed[0] == parsed[1] == parsed[2], name
    # the README's command
    readme = vars(_parse(["translate", "latest", "--backend", "onnx", "Das ist gut."]))
    assert (readme["run"], readme["backend"], readme["text"]) == ("latest", "onnx", ["Das ist gut."])


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2, argv
    return capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_a_usage_error_prints_the_subcommands_own_usage(name, capsys):
    err = _usage_error([name, *ORDERS[name][1], "--no-such-option"], capsys)
    assert err.startswith(f"usage: python -m src.main {name} ")
    assert f"python -m src.main {name}: error: unrecognized arguments: --no-such-option" in err
    err = _usage_error(["bench", "attention", "--no-such-option"], capsys)
    assert err.startswith("usage: python -m src.main bench attention ")


# (argv, the option refused): values that used to fail late (IndexError, range() arg 3 must not be zero)
# or not at all (nan temperature); each is now a usage error naming the option and the range
BAD_VALUES = [
    (["evaluate", "r1", "--max-sentences", "-3"], "--max-sentences", "an integer >= 1"),
    (["evaluate", "r1", "--max-sentences", "0"], "--max-sentences", "an integer >= 1"),
    (["translate", "r1", "x", "--batch-size", "0"], "--batch-size", "an integer >= 1"),
    (["translate", "r1", "x", "--beam", "0"], "--beam", "an integer >= 1"),
    (["translate", "r1", "x", "--max-len", "-1"], "--max-len", "an integer >= 1"),
    (["translate", "r1", "x", "--batch-size", "2.5"], "--batch-size", "an integer >= 1"),
    (["generate", "r1", "--temperature", "nan"], "--temperature", "a finite number >= 0"),
    (["generate", "r1", "--temperature", "inf"], "--temperature", "a finite number >= 0"),
    (["generate", "r1", "--temperature", "-0.5"], "--temperature", "a finite number >= 0"),
    (["generate", "r1", "--top-p", "0"], "--top-p", "a finite number > 0 and <= 1"),
    (["generate", "r1", "--top-p", "1.5"], "--top-p", "a finite number > 0 and <= 1"),
    (["generate", "r1", "--top-k", "0"], "--top-k", "an integer >= 1"),
    (["generate", "r1", "--max-new-tokens", "-1"], "--max-new-tokens", "an integer >= 0"),
    (["generate", "r1", "--seed", "-1"], "--seed", f"an integer >= 0 and <= {2**63 - 1}"),
    (["generate", "r1", "--seed", str(2**64)], "--seed", f"an integer >= 0 and <= {2**63 - 1}"),
    (["serve", "r1", "--port", "70000"], "--port", "an integer >= 0 and <= 65535"),
    (["train", "--nproc", "0"], "--nproc", "an integer >= 1"),
    (["sweep", "--trials", "0"], "--trials", "an integer >= 1"),
    (["sweep", "--trials", "2", "--concurrency", "0"], "--concurrency", "an integer >= 1"),
    (["sweep", "--trials", "2", "--time-limit", "-1"], "--time-limit", "a finite number > 0"),
    (["sweep", "--trials", "2", "--startup-trials", "-1"], "--startup-trials", "an integer >= 0"),
    (["bench", "--batch-size", "0"], "--batch-size", "an integer >= 1"),
    (["bench", "attention", "--warmup-s", "nan"], "--warmup-s", "a finite number >= 0"),
    (["bench", "attention", "--window", "0"], "--window", "an integer >= 1"),
]


@pytest.mark.parametrize(("argv", "option", "expected"), BAD_VALUES, ids=[" ".join(a[0]) for a in BAD_VALUES])
def test_bad_option_values_are_usage_errors_naming_the_option_and_the_range(argv, option, expected, capsys):
    err = _usage_error(argv, capsys)
    command = " ".join(argv[:2]) if argv[:2] == ["bench", "attention"] else argv[0]
    assert err.startswith(f"usage: python -m src.main {command} ")
    assert f"error: argument {option}: expected {expected}, got {argv[-1]!r}" in err


def test_the_edges_of_each_range_are_accepted():
    args = _parse(["generate", "r1", "--temperature", "0", "--top-p", "1", "--top-k", "1", "--max-new-tokens",
                   "0",
                   "--seed", "0"])
    assert (args.temperature, args.top_p, args.top_k, args.max_new_tokens, args.seed) == (0.0, 1.0, 1, 0, 0)
    assert _parse(["serve", "r1", "--port", "0"]).port == 0 and _parse(["serve", "r1", "--port",
                                                                        "65535"]).port == 65535
    assert _parse(["evaluate", "r1", "--max-sentences", "1"]).max_sentences == 1


HELP_COMMANDS = [[], *[[name] for name in ORDERS], ["bench", "attention"]]


def test_every_subcommands_help_imports_no_torch_and_takes_under_a_second():
    """Each ``--help`` in its own interpreter: torch (3-4 s to import) must not be loaded, and the
    command's own time (imports and parser) stays under a second."""
    code = ("import sys, time, contextlib, io, json; start = time.perf_counter(); from src.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(sys.argv[1:] + ['--help'])\n"
            "    except SystemExit: pass\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'clearml': 'clearml' in sys.modules,\n"
            "                  'seconds': time.perf_counter() - start,\n"
            "                  'usage': out.getvalue().startswith('usage:')}))")
    slow = {}
    for argv in HELP_COMMANDS:
        proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["usage"] and not result["torch"] and not result["clearml"], (argv, result)
        if result["seconds"] >= 1.0:
            slow[" ".join(argv)] = round(result["seconds"], 2)
    assert not slow, f"--help took a second or more: {slow}"


MARKUP = re.compile(r"``|`[^`]+`|:\w+:|\*\*")


@pytest.mark.parametrize("argv", [*HELP_COMMANDS, ["export-parity"], ["export-bench"], ["serving-bench"]],
                         ids=lambda argv: " ".join(argv) or "top-level")
def test_help_text_is_plain_text_without_restructuredtext_markup(argv, capsys):
    from src.main import main

    entry = {"export-parity": "src.export.parity", "export-bench": "src.export.bench",
             "serving-bench": "src.serving.bench"}
    if argv and argv[0] in entry:
        run = importlib.import_module(entry[argv[0]]).main
        argv = []
    else:
        run = main
    with pytest.raises(SystemExit) as exit_info:
        run([*argv, "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and text.startswith("usage:")
    assert not MARKUP.findall(text), MARKUP.findall(text)


def test_a_config_path_that_cannot_be_used_is_one_config_error_naming_it(tmp_path, monkeypatch):
    from src.config import ConfigError, load_serving_config
    from src.experiment import load_config

    folder, latin = tmp_path / "configs", tmp_path / "latin1.yaml"
    folder.mkdir()
    latin.write_bytes("model:\n  d_model: 64\ntracking:\n  project_name: caf\xe9\n".encode("latin-1"))
    cases = {folder: f"config file {folder} is a folder", tmp_path / "nosuch.yaml": "config file not found: ",
             latin: f"config file {latin} is not UTF-8: byte 0xe9 on line 4"}
    for path, message in cases.items():
        for load in (load_config, load_serving_config):
            with pytest.raises(ConfigError, match=re.escape(message)):
                load(path)
    readable = tmp_path / "readable.yaml"
    readable.write_text("model:\n  d_model: 64\n", encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(ConfigError,
                       match=re.escape(f"config file {readable} cannot be read: Permission denied")):
        load_config(readable)


@pytest.mark.parametrize(("suffix", "text"),
                         [(".yaml", ""), (".yaml", "\n  \n"), (".json", ""), (".json", "\n  \n"),
                                             (".yaml", "# every line a comment\n# model: {d_model: 64}\n")])
def test_an_empty_config_file_is_refused_not_taken_for_the_whole_default(tmp_path, suffix, text):
    from src.config import ConfigError
    from src.experiment import load_config

    path = tmp_path / f"empty{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError,
                       match=re.escape(f"config file {path} holds no settings "
                                       "(it is empty or only comments)")):
        load_config(path)
    path.write_text("{}", encoding="utf-8")  # the defaults, asked for explicitly, are still a config
    assert load_config(path).model.d_model > 0


def test_train_with_a_folder_or_an_empty_file_as_config_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    for config, message in ((tmp_path, f"config file {tmp_path} is a folder"),
                            (empty, f"config file {empty} holds no settings")):
        proc = run_src_main(["train", "--dry-run", "--config", str(config)], clean_env(tmp_path / "home"),
                            timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_output_file_that_cannot_be_written_is_a_usage_error_before_any_work(tmp_path, capsys,
                                                                                monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    err = _usage_error(["evaluate", "r1", "--output", str(tmp_path)], capsys)
    assert f"error: argument --output: {tmp_path} is a folder; expected a file to write" in err
    err = _usage_error(["report", "r1", "--out", str(a_file / "sub" / "r.html")], capsys)
    assert f"error: argument --out: cannot write {a_file / 'sub' / 'r.html'}: {a_file} is a file, " \
        "not a folder" in err
    err = _usage_error(["data", "--out-dir", str(a_file)], capsys)
    assert f"error: argument --out-dir: {a_file} is a file; expected a folder to write into" in err
    err = _usage_error(["lesson", "attention", "--output-dir", str(a_file / "sub")], capsys)
    assert f"error: argument --output-dir: cannot write {a_file / 'sub'}: {a_file} is a file, " \
        "not a folder" in err
    new = tmp_path / "new" / "m.json"  # a folder still to be made is fine
    assert _parse(["evaluate", "r1", "--output", str(new)]).output == str(new)
    assert _parse(["sweep", "--trials", "1", "--output-dir", str(new.parent)]).output_dir == str(new.parent)
    import os

    # as a read-only folder answers
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    err = _usage_error(["evaluate", "r1", "--output", str(new)], capsys)
    assert f"error: argument --output: cannot write {new}: {tmp_path} is read-only" in err


def test_a_reader_that_leaves_early_stops_the_command_quietly(tmp_path):
    """``... | head -1``: the pipe's reader is gone before the output is printed; no traceback, the shell's
    141."""
    proc = subprocess.Popen([sys.executable, "-m", "src.main", "runs", "list", "--runs-dir", str(tmp_path)],
                            cwd=REPO,
                            env=clean_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the interpreter is up and prints
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr
