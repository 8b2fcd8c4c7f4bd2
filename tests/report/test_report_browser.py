"""The report in a real browser: Debian's headless Chromium driven by Playwright, from a file:// URL.

Playwright's own browser download is not used (no network here): ``executable_path`` points at
``/usr/bin/chromium`` (``.ci/install`` installs it). Screenshots of every section are kept under
pytest's tmp dir, and copied to ``$REPORT_SCREENSHOTS`` when it is set.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.pipelines.conftest import missing_data

pytestmark = pytest.mark.timeout(300)
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("overview", "config", "curves", "gradients", "attention", "samples", "metrics", "registry")
PLOTS = ("curve-loss", "curve-learning-rate", "curve-throughput", "curve-validation-metrics",
         "grad-norm-heatmap")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        missing_data(f"no Chromium at {CHROMIUM} (apt-get install chromium; bash .ci/install)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to start as root, as in CI containers
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def opened(browser, report_run):
    """The report loaded, with every console message, page error and network request it caused."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console, errors, requests = [], [], []
    page.on("console", lambda message: console.append((message.type, message.text)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    url = report_run.report.resolve().as_uri()
    page.goto(url, wait_until="load")
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 5",
                           timeout=30_000)
    page.wait_for_timeout(500)  # plotly's last resize pass
    yield page, url, console, errors, requests
    page.close()


def test_the_page_loads_without_errors_or_network_requests(opened):
    page, url, console, errors, requests = opened
    assert errors == []
    assert [text for kind, text in console if kind == "error"] == []
    assert requests == [url]  # the page itself, nothing else: no CDN, no fonts, no images fetched


def test_every_plot_renders_with_a_nonzero_size(opened):
    page = opened[0]
    for plot_id in PLOTS:
        box = page.locator(f"#{plot_id} .main-svg").first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, (plot_id, box)
        drawn = page.locator(f"#{plot_id} .scatterlayer .trace path.js-line, #{plot_id} .heatmaplayer image")
        assert drawn.count() > 0, f"{plot_id}: no line or heatmap drawn"
        box = drawn.first.bounding_box()
        assert box is not None and box["width"] > 10 and box["height"] > 10, (plot_id, box)
    assert page.evaluate("document.getElementById('curve-loss').data[0].y.length") == 7  # steps 1, 5, ..., 30
    assert page.locator("#curve-loss .scatterlayer .trace").count() == 2  # train and valid


def test_the_iteration_slider_changes_the_heatmap(opened):
    page = opened[0]
    image, slider, label = page.locator("#heatmap-image"), page.locator("#heatmap-slider"), page.locator(
        "#heatmap-step")
    assert label.inner_text() == "step 30 (2 of 2)"
    assert page.evaluate("document.getElementById('heatmap-image').naturalWidth") > 100  # the PNG decoded
    before = image.get_attribute("src")
    slider.focus()
    page.keyboard.press("Home")  # as a reader moves it: to the first recorded iteration
    assert label.inner_text() == "step 15 (1 of 2)"
    after = image.get_attribute("src")
    assert after != before and after.startswith("data:image/png;base64,")
    page.keyboard.press("End")
    assert image.get_attribute("src") == before and label.inner_text() == "step 30 (2 of 2)"
    page.locator("#heatmap-figure").select_option(index=1)  # another figure: its own last iteration
    assert image.get_attribute("src") not in (before, after) and label.inner_text() == "step 30 (2 of 2)"
    page.locator("#heatmap-figure").select_option(index=0)


def test_a_screenshot_of_each_section(opened, tmp_path_factory):
    page = opened[0]
    folder = tmp_path_factory.mktemp("report_screenshots")
    page.add_style_tag(content="nav { position: static; }")  # a sticky bar would cover part of tall sections
    for section in SECTIONS:
        path = folder / f"{section}.png"
        page.locator(f"section#{section}").screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000, section
    page.screenshot(path=str(folder / "page.png"), full_page=True)
    if os.environ.get("REPORT_SCREENSHOTS"):
        target = Path(os.environ["REPORT_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy(png, target / png.name)


FIT_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => {
  const rect = element => {
    const r = element.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom];
  };
  const legend = plot.querySelector('.legend');
  return {id: plot.id, box: rect(plot.closest('.plot') || plot.closest('section')),
          svg: rect(plot.querySelector('.main-svg')),
          area: Array.from(plot.querySelectorAll('.nsewdrag')).map(rect),
          lines: Array.from(plot.querySelectorAll('.scatterlayer .trace path.js-line')).map(rect),
          traces: plot.data.length, legend: legend ? rect(legend) : null,
          legend_items: plot.querySelectorAll('.legend .traces').length};
})"""


@pytest.mark.parametrize("width", [1400, 1920])
def test_the_charts_fit_their_box_with_their_legend(browser, report_run, width, tmp_path_factory):
    """Issue 26: at 1,400 and 1,920 px the loss chart was drawn past its grid cell (its lines ran off
    the right edge at step 16 of 30) and its legend was cut off. Every chart's drawing, plot area and
    lines, and the legend of a chart with several lines, now lie inside the chart's own box."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(report_run.report.resolve().as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 5",
                               timeout=30_000)
        page.wait_for_timeout(500)  # plotly's last resize pass
        charts = page.evaluate(FIT_JS)
        folder = tmp_path_factory.mktemp(f"report_{width}")
        page.locator("section#curves").screenshot(path=str(folder / f"curves_{width}.png"))
        if os.environ.get("REPORT_SCREENSHOTS"):
            shutil.copy(folder / f"curves_{width}.png",
                        Path(os.environ["REPORT_SCREENSHOTS"]) / f"curves_{width}.png")
    finally:
        page.close()
    assert {chart["id"] for chart in charts} >= set(PLOTS)

    def inside(inner, outer, what):
        left, right, top, bottom = outer
        assert (inner[0] >= left - 1 and inner[1] <= right + 1
                and inner[2] >= top - 1 and inner[3] <= bottom + 1), \
            f"{what} {inner} is not inside its box {outer} at {width} px"

    for chart in charts:
        inside(chart["svg"], chart["box"], f"{chart['id']}: the drawing")
        assert chart["area"], f"{chart['id']}: no plot area"
        for area in chart["area"]:
            inside(area, chart["svg"], f"{chart['id']}: the plot area")
        for line in chart["lines"]:  # a line's whole extent, first step to last, inside the plot area
            assert any(area[0] - 1 <= line[0] and line[1] <= area[1] + 1 for area in chart["area"]), \
                f"{chart['id']}: a line spans x {line[:2]}, outside the plot areas {chart['area']} " \
                f"at {width} px"
    loss = next(chart for chart in charts if chart["id"] == "curve-loss")
    assert loss["traces"] == 2 and loss["legend_items"] == 2  # train and valid, both named
    inside(loss["legend"], loss["box"], "curve-loss: the legend")
