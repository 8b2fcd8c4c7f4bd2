"""The ``lesson`` command: the list, a clear error for an unknown name, ``--interactive`` through a
pseudo-terminal, and a tracked run's offline ClearML session."""

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from src.lessons.runner import LESSONS
from src.main import main
from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_no_name_lists_every_lesson_with_its_summary(capsys):
    assert main(["lesson"]) == 0
    listing = capsys.readouterr().out
    for name in LESSONS:
        assert re.search(rf"^{name}\s+\S", listing, re.MULTILINE), f"{name} missing from:\n{listing}"
    assert "sqrt(d_k)" in listing  # the attention lesson's summary line


def test_an_unknown_name_is_an_error_listing_the_lessons(capsys):
    from src.lessons.runner import lesson_module

    with pytest.raises(ValueError, match="unknown lesson 'atention'; the lessons are: attention, multi_head"):
        lesson_module("atention")
    assert main(["lesson", "atention", "--no-track"]) == 1


def test_offline_and_no_track_are_mutually_exclusive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lesson", "attention", "--offline", "--no-track"])
    assert exit_info.value.code == 2
    assert "argument --no-track: not allowed with argument --offline" in capsys.readouterr().err


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, " ".join(ANSI.sub("", text).split()))
    assert match, f"{pattern!r} not in:\n{ANSI.sub('', text)[-2000:]}"
    return float(match.group(1))


def test_interactive_takes_a_new_value_and_shows_its_effect(tmp_path):
    """Enter at step 1, then d_k = 1024 at step 2: the unscaled softmax is shown more saturated than at 64."""
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    child = pexpect.spawn(sys.executable,
                          ["-m", "src.main", "lesson", "attention", "--interactive", "--no-track",
                                           "--output-dir", str(tmp_path)], cwd=REPO, env=env,
                          encoding="utf-8",
                          timeout=90, dimensions=(50, 200))
    try:
        child.expect(r"position \[[^\n]*q: quit\)> ")
        child.sendline("")  # next step
        child.expect(r"d_k \[[^\n]*q: quit\)> ")
        default = _number(r"d_k=64: unscaled max weight ([0-9.]+)", child.before)
        child.sendline("not-a-number")
        child.expect(r"d_k expects an integer, got 'not-a-number'")
        child.expect(r"d_k \[[^\n]*q: quit\)> ")
        child.sendline("1024")
        child.expect(r"d_k \[[^\n]*q: quit\)> ")
        changed = _number(r"d_k=1024: unscaled max weight ([0-9.]+)", child.before)
        assert "d_k = 1024" in ANSI.sub("", child.before)
        assert changed > default + 0.05, (default, changed)
        child.sendline("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert list((tmp_path / "plots").rglob("saturation_step0000001.png"))  # the re-run's figure is saved too


def test_a_tracked_run_writes_an_offline_session_with_figures_tables_and_parameters(tmp_path):
    """In its own process: an offline task leaves a reporter thread that must not outlive the test."""
    out = tmp_path / "out"
    proc = run_src_main(["lesson", "attention", "--offline", "--output-dir", str(out), "--project", "demo"],
                        clean_env(tmp_path / "home"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (session_zip,) = (out / "clearml_offline").glob("*.zip")
    assert f"offlinesession:{session_zip}" in "".join(proc.stdout.split())  # rich may fold the long path
    session = read_offline_session(session_zip)
    assert session.task["project_name"] == "demo/lessons" and session.task["name"] == "lesson-attention"
    images = {(i.title, i.series) for i in session.images}
    assert {("01 queries, keys and values", "heatmap"), ("02 why divide by sqrt(d_k)", "saturation"),
            ("03 temperature", "heatmap")} <= images
    assert all(session.read_bytes(i.file) for i in session.images)
    plots = {(t, s) for t, s, _ in session.plots}  # figures (plotly, or an embedded image) and tables
    assert {("02 why divide by sqrt(d_k)", "table"), ("02 why divide by sqrt(d_k)", "saturation"),
            ("01 queries, keys and values", "heatmap")} <= plots
    lesson = session.hyperparameters["lesson"]
    assert lesson["lesson"] == "attention" and lesson["02 why divide by sqrt(d_k)/d_k"] == "64"
    (_, unscaled), = session.scalars[("02 why divide by sqrt(d_k)/metrics", "max_weight_unscaled")]
    assert unscaled > 0.5
    assert list((out / "plots").rglob("*.png"))
