"""Training curves from train_history.jsonl rows: train and valid loss on one figure, lr on another."""

import numpy as np

from src.visualization import training_curve_figures

HISTORY = [
    {"step": 1, "loss": 5.0, "lr": 1e-4},
    {"step": 2, "loss": 4.0, "lr": 2e-4},
    {"step": 2, "valid_loss": 4.5, "valid_perplexity": float(np.exp(4.5))},
    {"step": 3, "loss": 3.0, "lr": 3e-4},
    {"step": 4, "loss": 2.5, "lr": 2.5e-4},
    {"step": 4, "valid_loss": 3.5, "valid_perplexity": float(np.exp(3.5))},
]


def _lines(figure) -> dict[str, tuple[list[float], list[float]]]:
    lines = figure.axes[0].get_lines()
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in lines}


def test_loss_figure_has_train_and_valid_lines_with_their_steps():
    figures = training_curve_figures(HISTORY)
    assert set(figures) == {"loss", "learning_rate"}
    assert _lines(figures["loss"]) == {
        "train": ([1, 2, 3, 4], [5.0, 4.0, 3.0, 2.5]),
        "valid": ([2, 4], [4.5, 3.5]),
    }
    assert _lines(figures["learning_rate"]) == {"lr": ([1, 2, 3, 4], [1e-4, 2e-4, 3e-4, 2.5e-4])}


def test_history_without_validation_rows_gives_one_loss_line():
    train_only = [row for row in HISTORY if "loss" in row]
    lines = _lines(training_curve_figures(train_only)["loss"])
    assert list(lines) == ["train"] and lines["train"][1] == [5.0, 4.0, 3.0, 2.5]


def test_validation_only_history_has_no_learning_rate_figure():
    figures = training_curve_figures([row for row in HISTORY if "valid_loss" in row])
    assert set(figures) == {"loss"} and list(_lines(figures["loss"])) == ["valid"]


def test_empty_history_gives_no_figures():
    assert training_curve_figures([]) == {}
