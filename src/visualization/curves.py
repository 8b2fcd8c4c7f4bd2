"""Training curves (loss, learning rate) as a local PNG; ClearML draws its own from the scalars."""

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from src.visualization.figure import new_figure


def plot_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    title: str,
    ylabel: str,
    log_y: bool = False,
) -> Figure:
    """One line per series, e.g. ``{"train": (steps, losses), "valid": (steps, losses)}``."""
    figure = new_figure(7.0, 4.0)
    ax = figure.subplots()
    for name, (steps, values) in curves.items():
        if len(steps) != len(values):
            raise ValueError(f"series {name!r}: {len(steps)} steps but {len(values)} values")
        ax.plot(steps, values, label=name, marker="." if len(steps) < 50 else None)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend()
    figure.tight_layout()
    return figure
