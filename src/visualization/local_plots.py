"""Debug images as PNG files in the run folder, so they exist with tracking off or offline."""

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "untitled"


def figure_path(output_dir: Path, title: str, series: str, step: int) -> Path:
    """``output_dir/plots/<title>/<series>_step<step>.png`` with file-system-safe names."""
    return Path(output_dir) / "plots" / _slug(title) / f"{_slug(series)}_step{step:07d}.png"


def save_png(figure: "Figure", output_dir: Path, title: str, series: str, step: int) -> Path:
    path = figure_path(output_dir, title, series, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)  # figures are laid out already; bbox_inches="tight" would render twice
    return path


def close_figure(figure: "Figure") -> None:
    """Release a figure whether or not pyplot manages it (a bare ``Figure`` needs nothing)."""
    import matplotlib.pyplot as plt

    plt.close(figure)
