"""A run's self-contained HTML report: the offline counterpart of the ClearML web UI.

``write_report(run_dir)`` reads the run folder (``sources``), builds its sections (``sections``,
plotly figures in ``figures``) and writes one HTML file with everything inlined (``html``).
"""

from pathlib import Path

from loguru import logger

REPORT_FILE = "report.html"


def render_report(run_dir: Path) -> str:
    """The report of ``run_dir`` as one HTML document (plotly.js, CSS, scripts and images inlined)."""
    from plotly.offline import get_plotlyjs

    from src.report.html import page
    from src.report.sections import all_sections
    from src.report.sources import read_run

    run = read_run(Path(run_dir))
    subtitle = f"{run.family} · {run.config.get('task', '?')} · status {run.status.get('status', '?')}"
    return page(f"Run report: {run.run_dir.name}", subtitle, all_sections(run), get_plotlyjs())


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``<run_dir>/report.html``) and return its path."""
    out = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    text = render_report(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a page
    logger.info("report: {} ({:.1f} MB)", out, out.stat().st_size / 1e6)
    return out


def try_write_report(run_dir: Path) -> Path | None:
    """``write_report`` for the end of a pipeline: a failure is a warning, never the run's failure."""
    try:
        return write_report(run_dir)
    except Exception as err:  # the run itself is finished and saved; the report is a convenience
        logger.warning("report: could not write the HTML report of {} ({}: {}); "
                       "retry with: python -m src.main report {}", run_dir, type(err).__name__, err, run_dir)
        return None
