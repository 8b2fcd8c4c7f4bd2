"""The report of a real tiny translation run: every section, the run's own data, nothing fetched from a
network."""

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from src.report import REPORT_FILE, render_report, try_write_report
from src.report.figures import curve_figures
from src.report.sources import read_grad_norms, read_history

pytestmark = pytest.mark.timeout(300)
SECTIONS = ("overview", "config", "curves", "gradients", "attention", "samples", "metrics", "registry")
_PNG_NAME = re.compile(r"_step(\d+)\.png$")


class Resources(HTMLParser):
    """Every tag's address-like attributes and every inline style, as the browser would resolve them."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.script_sources: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href") and value:
                self.addresses.append((tag, name, value))
            if name == "style" and value:
                self.styles.append(value)
        if tag == "script" and dict(attrs).get("src"):
            self.script_sources.append(dict(attrs)["src"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def parsed(html: str) -> Resources:
    parser = Resources()
    parser.feed(html)
    return parser


def json_element(html: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.DOTALL)
    assert match, f"no JSON element {element_id!r} in the report"
    return json.loads(match.group(1))


def test_the_train_summary_names_the_report_and_it_exists(report_run):
    assert report_run.report == report_run.run_dir / REPORT_FILE
    # plotly.js is inlined
    assert report_run.report.is_file() and report_run.report.stat().st_size > 1_000_000
    assert report_run.html.startswith("<!DOCTYPE html>") and report_run.html.rstrip().endswith("</html>")


def test_every_section_is_there(report_run):
    for section in SECTIONS:
        assert f'<section id="{section}">' in report_run.html, f"section {section!r} missing"
        assert f'href="#{section}"' in report_run.html, f"no link to section {section!r}"


def test_nothing_refers_to_a_network_address(report_run):
    resources = parsed(report_run.html)
    assert resources.script_sources == []  # every script is inline, plotly.js included
    assert "<link" not in report_run.html
    remote = [(tag, attr, value[:80]) for tag, attr, value in resources.addresses
              if re.match(r"^\s*(https?:)?//", value, re.IGNORECASE)]
    assert remote == []
    images = [value for tag, attr, value in resources.addresses if tag == "img"]
    assert images and all(value.startswith("data:image/png;base64,") for value in images)
    assert all(value.startswith("#") for tag, attr, value in resources.addresses if tag == "a")
    assert not any(re.search(r"url\(\s*['\"]?\s*(https?:)?//", style) for style in resources.styles)
    assert "Plotly.newPlot" in report_run.html and "plotly-graph-div" in report_run.html


def test_the_slider_has_one_step_per_recorded_iteration_and_shows_the_recorded_images(report_run):
    figures = json_element(report_run.html, "heatmap-data")
    plots = report_run.run_dir / "train" / "plots"
    recorded = {
        folder.name: sorted(folder.glob("*.png")) for folder in plots.iterdir() if folder.name.startswith(
            "attention")}
    assert len(figures) == sum(len({p.name.split("_step")[0] for p in pngs})
                               for pngs in recorded.values()) == 3
    for figure in figures:
        title = figure["label"].split(" · ")[0].replace(" ", "_")
        pngs = recorded[title]
        steps = [int(_PNG_NAME.search(p.name).group(1)) for p in pngs]
        assert figure["steps"] == steps == [15, 30]  # tiny.yaml: heatmap_every 15, 30 steps
        decoded = [base64.b64decode(uri.split(",", 1)[1]) for uri in figure["images"]]
        assert decoded == [p.read_bytes() for p in pngs]  # each slider position is that step's own figure
    slider = re.search(r'<input type="range" id="heatmap-slider" min="0" max="(\d+)"', report_run.html)
    assert slider and int(slider.group(1)) == len(figures[0]["steps"]) - 1


def test_the_config_is_the_runs_own(report_run):
    stored = json.loads((report_run.run_dir / "config.json").read_text())
    assert json_element(report_run.html, "run-config") == stored
    # tiny.yaml, not a default
    assert stored["run_id"] == report_run.run_dir.name and stored["model"]["d_model"] == 32
    assert f"<td>d_model</td><td>{stored['model']['d_model']}</td>" in report_run.html


def test_curves_hold_the_training_history(report_run):
    history = read_history(report_run.run_dir / "train" / "train_history.jsonl")
    figures = curve_figures(history)
    assert set(figures) == {"loss", "learning rate", "throughput", "validation metrics"}
    train, valid = figures["loss"].data
    assert list(train.y) == [row["loss"] for row in history if "loss" in row]
    assert list(valid.y) == [row["valid_loss"] for row in history if "valid_loss" in row]
    assert list(figures["learning rate"].data[0].x) == [1, 5, 10, 15, 20, 25, 30]  # log_every 5, and step 1
    for name in ("loss", "learning-rate", "throughput", "validation-metrics"):
        assert f'id="curve-{name}"' in report_run.html


def test_gradient_norms_cover_every_layer_group_at_every_measured_step(report_run):
    grad = read_grad_norms(report_run.run_dir / "train" / "checkpoints")
    assert grad.groups == ("embeddings", "encoder.layers.0", "decoder.layers.0", "generator")
    assert grad.steps == (5, 10, 15, 20, 25, 30)  # grad_norm_every 5
    assert all(len(row) == len(grad.steps) and all(0 < v < 1e3 for v in row) for row in grad.norms)
    assert 'id="grad-norm-heatmap"' in report_run.html


def test_samples_metrics_and_registry_decision_are_the_runs(report_run):
    html, run_dir = report_run.html, report_run.run_dir
    import html as html_lib

    for line in (run_dir / "evaluate" / "samples.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        source, reference = line.split("\t")[:2]
        assert html_lib.escape(reference) in html, reference
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    table = html.split('id="metrics-table"', 1)[1].split("</table>", 1)[0]
    assert f"<td>beam.bleu</td><td class=\"num\">{metrics['beam']['bleu']:.4g}</td>" in table
    assert "<td>test.perplexity</td>" in table and "<td>n_sentences</td>" in table
    decision = json.loads((run_dir / "status.json").read_text())["steps"]["register"]["output"]
    assert f'id="registry-stage">{decision["stage"]}</div>' in html
    assert f'<p id="registry-reason">{html_lib.escape(decision["reason"])}</p>' in html


def test_a_partial_run_omits_its_missing_sections_instead_of_breaking(report_run, tmp_path):
    """A run that died during training: config, status and some history only."""
    partial = tmp_path / report_run.run_dir.name
    (partial / "train").mkdir(parents=True)
    for name in ("config.json", "status.json", "train/train_history.jsonl"):
        shutil.copy(report_run.run_dir / name, partial / name)
    html = render_report(partial)
    for present in ("overview", "config", "curves", "registry"):  # status.json still holds the decision
        assert f'<section id="{present}">' in html
    for absent in ("gradients", "attention", "samples", "metrics", "figures"):
        assert f'<section id="{absent}">' not in html
    assert 'id="heatmap-data"' not in html and 'id="heatmap-slider"' not in html


def test_the_command_writes_where_asked_and_refuses_an_unknown_run(report_run, tmp_path, capsys):
    from src.report.cli import command

    out = tmp_path / "elsewhere" / "r.html"
    assert command(SimpleNamespace(run="latest", runs_dir=str(report_run.runs_dir), out=str(out))) == (
        0, str(out))
    assert '<section id="attention">' in out.read_text(encoding="utf-8")
    assert command(SimpleNamespace(run="no-such-run", runs_dir=str(report_run.runs_dir), out=None)) == (1, "")


def test_a_failing_report_is_a_warning_not_an_error(tmp_path):
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        assert try_write_report(tmp_path / "not-a-run") is None
    finally:
        logger.remove(sink)
    assert any("could not write the HTML report" in m and "status.json" in m for m in messages)
    assert not (tmp_path / "not-a-run" / REPORT_FILE).exists()


@pytest.mark.parametrize("n, limit", [(1, 40), (2, 40), (40, 40), (41, 40), (333, 40), (1000, 7)])
def test_a_long_runs_heatmap_steps_are_thinned_evenly_keeping_the_first_and_last(n, limit):
    from src.report.sections import evenly_spaced

    kept = evenly_spaced(n, limit)
    assert kept == sorted(set(kept)) and kept[0] == 0 and kept[-1] == n - 1
    assert len(kept) == min(n, limit)
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spread
