"""What the loop records besides loss and learning rate, to see *why* training behaves.

Every step whose gradient norm is read: the total norm. Every ``grad_norm_every`` steps, and only when a
tracker records them (``enabled``): the norm of each layer's gradient, kept for the layer x step heatmap
drawn at the end, and the update/parameter ratio of that step. At the end: the loss and learning-rate
curves as PNG files in the run folder, for readers without ClearML. The measures themselves are in
``monitor.py``; the per-layer history travels in the training checkpoints, so a resumed run's heatmap
covers the whole run.
"""

from pathlib import Path

import torch

from src.tracking.protocol import TrackerLike
from src.training.monitor import UpdateRatio, grouped_grad_norms


class Diagnostics:
    """When to take the per-layer measures, and their history.

    Args:
        enabled: take them at all (a tracker records them, and this is rank 0).
        every: take them at steps divisible by this (``tracking.grad_norm_every``).
    """

    def __init__(self, enabled: bool, every: int) -> None:
        self.enabled, self.every = enabled, every
        self.grad_history: dict[str, list[float]] = {}  # layer group -> its norms at grad_steps
        self.grad_steps: list[int] = []
        self.update_ratio = UpdateRatio()

    def measures(self, step: int) -> bool:
        """Whether the optimizer step that ends at ``step`` gets the per-layer norms and the update ratio."""
        return self.enabled and step % self.every == 0

    def before_step(self, model: torch.nn.Module, step: int) -> bool:
        """Keep the weights before the step that ends at ``step`` if it is measured; say whether it is."""
        if measure := self.measures(step):
            self.update_ratio.snapshot(model)
        return measure

    def log_gradients(self, model: torch.nn.Module, tracker: TrackerLike, total_norm: float, step: int) -> None:
        """The total gradient norm; at measured steps also each layer's, added to the heatmap's history."""
        tracker.log_scalar("grad_norm", "total", total_norm, step)
        if not self.measures(step):
            return
        norms = grouped_grad_norms(model)
        tracker.log_scalars("grad_norm_by_layer", norms, step)
        self.grad_steps.append(step)
        for group, value in norms.items():
            self.grad_history.setdefault(group, []).append(value)

    def log_update_ratio(self, model: torch.nn.Module, tracker: TrackerLike, step: int) -> None:
        """``||update|| / ||weights||`` of the step just taken (weights kept by ``before_step``)."""
        tracker.log_scalar("update_ratio", "update/param", self.update_ratio.ratio(model), step)

    def log_heatmap(self, tracker: TrackerLike, step: int) -> None:
        """The per-layer gradient norms of the whole run as one layer x step heatmap, if any were taken."""
        if not self.grad_steps:
            return
        from src.visualization import plot_grad_norm_heatmap

        groups = list(self.grad_history)  # model order: embeddings, encoder, decoder, generator
        matrix = [self.grad_history[g] for g in groups]
        tracker.log_figure("gradient norms", "layer x step", plot_grad_norm_heatmap(groups, self.grad_steps, matrix),
                           step)


def save_curves(history: list[dict[str, float]], run_dir: Path, step: int) -> None:
    """Loss (train and valid) and learning-rate curves as PNG in the run folder, for offline readers."""
    from src.tracking.local_plots import close_figure, save_png
    from src.visualization import training_curve_figures

    for name, figure in training_curve_figures(history).items():
        try:
            save_png(figure, run_dir, "curves", name, step)
        finally:
            close_figure(figure)
