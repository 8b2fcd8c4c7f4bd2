"""The report of every other family's tiny run: its own sections present, the ones it lacks left out, and the
page clean in headless Chromium. Slow: three tiny pipelines, about 45 s each on an idle 2-core CPU."""

import re
from pathlib import Path

import pytest

from tests.pipelines.conftest import imdb_data_dir, missing_data, train_offline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
CHROMIUM = Path("/usr/bin/chromium")


def data_env(config: str) -> dict[str, str]:
    """The data the family's tiny config reads, passed to a run with an empty HOME (or the test skips)."""
    if config == "config/imdb_tiny.yaml":
        return {"STEPWISE_DATA_DIR": imdb_data_dir()}
    if config == "config/lm_tiny.yaml":
        from src.data.prose import data_root

        if not (data_root() / "austen").is_dir() or not (data_root() / "brown").is_dir():
            missing_data(f"Austen/Brown not cached under {data_root()}: run bash .ci/install")
        return {"STEPWISE_DATA_DIR": str(data_root())}
    from src.experiment import load_config

    root = Path(load_config(config).data.fashion_mnist_path)
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        missing_data(f"Fashion-MNIST not installed in {root} (bash .ci/install)")
    return {}


# config, the heatmap figures the probe records, the sample table's title, whether there is a confusion matrix
FAMILIES = {
    "classifier": ("config/imdb_tiny.yaml", {"attention cls"}, "misclassified · most confident mistakes",
                   True),
    "lm": ("config/lm_tiny.yaml", {"attention decoder self"}, "samples · continuations", False),
    "vit": ("config/vit_tiny.yaml", {"attention cls", "attention rollout"}, "most confident mistakes", True),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_run(request, tmp_path_factory):
    config, *expected = FAMILIES[request.param]
    env = data_env(config)
    proc, run_dir = train_offline(config, tmp_path_factory.mktemp(request.param), **env)
    match = re.search(r"^report:\s+(\S+)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout[-2000:]
    return Path(match.group(1)), run_dir, expected


def test_each_family_gets_its_sections_and_no_empty_ones(family_run):
    report, run_dir, (heatmap_titles, sample_title, confusion) = family_run
    html = report.read_text(encoding="utf-8")
    for section in ("overview", "config", "curves", "gradients", "attention", "samples", "metrics",
                    "registry"):
        assert f'<section id="{section}">' in html, section
    labels = set(re.findall(r'<option value="\d+">([^<·]+) ·', html))
    assert {label.strip() for label in labels} == heatmap_titles
    assert f"<h3>{sample_title}</h3>" in html
    assert ('id="confusion-matrix"' in html) == confusion
    assert "translations" not in html.split('<section id="samples">')[1].split("</section>")[0]


def test_each_familys_page_is_clean_in_a_browser(family_run):
    report = family_run[0]
    if not CHROMIUM.is_file():
        missing_data(f"no Chromium at {CHROMIUM} (apt-get install chromium; bash .ci/install)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        problems, requests = [], []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.resolve().as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length > 0",
                               timeout=30_000)
        n_plots = page.locator(".plotly-graph-div").count()
        n_drawn = page.locator(".plotly-graph-div .scatterlayer .trace path.js-line, "
                               ".plotly-graph-div .heatmaplayer image").count()
        browser.close()
    assert problems == [] and requests == [report.resolve().as_uri()]
    assert n_plots >= 5 and n_drawn >= n_plots  # curves, gradient norms (and a confusion matrix), each drawn
