"""``translate`` fed on standard input: each line is translated as it arrives, and a line that is
not UTF-8 is named on stderr while every other line is still translated."""

import io
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from src.inference.cli import stdin_lines, utf8_text
from tests.clearml_stub.stub import kill_process_group

REPO = Path(__file__).resolve().parents[2]


def test_stdin_lines_gives_each_line_as_soon_as_it_is_complete():
    """On a real pipe: the first line comes out while the writer still holds the pipe open (no read-ahead
    to EOF or to a full buffer); lines already waiting come together, at most ``batch_size`` at a time."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb", buffering=0) as writer:
        batches = stdin_lines(reader, batch_size=2)
        writer.write(b"eins\n")
        got = []
        worker = threading.Thread(target=lambda: got.append(next(batches)), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert got == [[(1, b"eins")]], "the first line was not given before more input arrived"
        writer.write(b"zwei\r\ndrei\nvier\nf\xfcnf")  # three complete lines at once, and an unfinished one
        assert next(batches) == [(2, b"zwei"), (3, b"drei")]
        assert next(batches) == [(4, b"vier")]
        writer.close()
        assert list(batches) == [[(5, b"f\xfcnf")]]  # the last line, without a newline, at the end of input


def test_utf8_text_names_the_line_and_the_column_of_the_first_bad_byte():
    assert utf8_text("Grüße\n".encode(), "standard input") == "Grüße\n"
    with pytest.raises(ValueError, match=r"^standard input, line 2: not UTF-8 \(byte 0xfc at column 3\)$"):
        utf8_text("Hallo\nGr\xfc\xdfe\n".encode("latin-1"), "standard input")
    with pytest.raises(ValueError, match=r"^standard input, line 7: not UTF-8 \(byte 0xff at column 1\)$"):
        utf8_text(b"\xff", "standard input", first_line=7)


def test_translate_answers_each_stdin_line_as_it_arrives_and_skips_only_a_bad_one(tiny_runs):
    """As a user piping into translate: line 1's translation arrives before line 2 is sent; a latin-1
    line is named (line 2) and gets an empty output line; line 3 (line 1 again) is translated as line 1
    was; exit status 1."""
    run = str(tiny_runs.run_dirs[0])
    proc = subprocess.Popen([sys.executable, "-m", "src.main", "translate", run, "--max-len", "8"], cwd=REPO,
                            env=tiny_runs.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.stdin.write(b"Das ist gut.\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "no translation of line 1 while standard input stayed open"
        first = proc.stdout.readline().decode()
        out, err = proc.communicate("Das ist m\xfcde.\nDas ist gut.\n".encode("latin-1"), timeout=90)
    finally:
        kill_process_group(proc)
    err = err.decode()
    assert proc.returncode == 1, err[-2000:]
    assert first.strip()  # a translation
    # line 2 left empty, line 3 translated
    assert out.decode().split("\n") == ["", first.removesuffix("\n"), ""]
    assert "standard input, line 2: not UTF-8 (byte 0xfc at column 10); its output line is left empty" in err
    assert "translate: standard input: 1 line(s) not UTF-8 (line 2)" in err and "Traceback" not in err


def test_generate_names_a_non_utf8_line_of_its_stdin_prompt(monkeypatch):
    import argparse
    from types import SimpleNamespace

    import src.inference.loader as loader
    import src.runs as runs
    from src.inference import generate

    monkeypatch.setattr(runs, "resolve_checkpoint", lambda run, runs_dir: Path("best.pt"))
    monkeypatch.setattr(loader, "load_for_inference",
                        lambda path, device, backend: SimpleNamespace(family="decoder_lm"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Once upon\na time \xe9\n")))
    args = argparse.Namespace(run="r", runs_dir="runs", device="cpu", backend="torch", prompt=None)
    with pytest.raises(ValueError, match=r"^standard input, line 2: not UTF-8 \(byte 0xe9 at column 8\)$"):
        generate.generate_command(args)
