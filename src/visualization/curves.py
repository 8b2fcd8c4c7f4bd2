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


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows that carry ``key``, in file order."""
    rows = [row for row in history if key in row]
    return [int(row["step"]) for row in rows], [float(row[key]) for row in rows]


def training_curve_figures(history: list[dict]) -> dict[str, Figure]:
    """Loss and learning-rate figures from the rows of ``train_history.jsonl``.

    Train rows are ``{"step", "loss", "lr"}``, validation rows ``{"step", "valid_loss",
    "valid_perplexity"}``; either kind may be missing. Returns ``{"loss": ..., "learning_rate": ...}``
    without the figures that have no data (an empty history gives ``{}``).
    """
    losses = {name: _series(history, key) for name, key in (("train", "loss"), ("valid", "valid_loss"))}
    losses = {name: series for name, series in losses.items() if series[0]}
    learning_rate = _series(history, "lr")
    figures = {}
    if losses:
        figures["loss"] = plot_curves(losses, "loss", "cross-entropy")
    if learning_rate[0]:
        figures["learning_rate"] = plot_curves({"lr": learning_rate}, "learning rate", "learning rate")
    return figures
