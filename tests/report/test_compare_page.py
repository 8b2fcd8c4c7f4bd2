"""``runs compare A B --html FILE``: one page with the runs' results, config differences, overlaid curves."""

import json

import pytest

from src.report.compare import overlaid_curves, render_comparison
from src.report.sources import read_history
from src.runs.table import Comparison, compare_runs
from tests.clearml_stub.stub import run_src_main

pytestmark = pytest.mark.timeout(120)


def history(run_dir):
    return read_history(run_dir / "train" / "train_history.jsonl")


def test_each_series_gets_one_trace_per_run_that_has_it():
    histories = {"a": [{"step": 1, "loss": 2.0, "lr": 0.1},
                       {"step": 2, "valid_loss": 1.5, "valid_bleu": 3.0}],
                 "b": [{"step": 1, "loss": 2.5, "lr": 0.2}, {"step": 3, "loss": 2.1}]}
    figures = overlaid_curves(histories)
    assert list(figures) == ["loss", "valid_loss", "lr", "valid_bleu"]
    assert [(t.name, list(t.x), list(t.y)) for t in figures["loss"].data] == [("a", [1], [2.0]),
                                                                            ("b", [1, 3], [2.5, 2.1])]
    assert [t.name for t in figures["valid_bleu"].data] == ["a"]  # b never measured it: no empty trace
    assert figures["valid_bleu"].layout.title.text == "validation bleu"


def test_the_page_holds_both_runs_their_results_and_their_curves(tiny_runs, tmp_path):
    first, second = tiny_runs.run_dirs
    out = tmp_path / "compare.html"
    proc = run_src_main(["runs", "compare", str(first), str(second), "--html", str(out)], tiny_runs.env, 60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith(f"comparison page: {out}")
    page = out.read_text(encoding="utf-8")
    assert "<script src=" not in page  # plotly.js inlined: the file opens with no network
    for section in ("results", "config", "curves"):
        assert f'<section id="{section}">' in page
    assert "The runs have the same config." in page  # the same command, twice
    comparison = compare_runs([str(first), str(second)], tiny_runs.runs_dir)
    for row in comparison.metric_rows:  # every figure of the text table is on the page
        assert all(str(value) in page for value in row)
    figures = overlaid_curves({run.run_id: history(run.path) for run in comparison.runs})
    assert [trace.name for trace in figures["loss"].data] == [first.name, second.name]
    steps = [row["step"] for row in history(first) if "loss" in row]
    assert list(figures["loss"].data[0].x) == steps
    assert 'id="compare-loss"' in page and 'id="compare-valid_loss"' in page


def test_config_differences_are_listed_by_key(tiny_runs):
    comparison = compare_runs([str(path) for path in tiny_runs.run_dirs], tiny_runs.runs_dir)
    changed = Comparison(comparison.runs, [["training.lr", "0.001", "0.002"]], comparison.metric_rows)
    page = render_comparison(changed)
    assert "Config differences (1)" in page and "training.lr" in page and json.dumps("0.002")[1:-1] in page


def test_runs_list_takes_no_html(tiny_runs, tmp_path):
    proc = run_src_main(["runs", "list", "--runs-dir", str(tiny_runs.runs_dir), "--html",
                         str(tmp_path / "x.html")],
                        tiny_runs.env, 60)
    assert proc.returncode != 0 and "runs list takes no --html" in proc.stderr
    assert not (tmp_path / "x.html").exists()
