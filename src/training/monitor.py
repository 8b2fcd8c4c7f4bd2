"""What a researcher looks at to see *why* training behaves: gradient, parameter and update norms.

The measures, then when the loop takes them (``Diagnostics``). Every step whose gradient norm is read:
the total norm. Every ``grad_norm_every`` steps, and only when a tracker records them: the norm of each
layer's gradient, kept for the layer x step heatmap drawn at the end, and the update/parameter ratio of
that step. The per-layer history travels in the training checkpoints, so a resumed run's heatmap covers
the whole run. At the end: the loss and learning-rate curves as PNG files in the run folder, for readers
without ClearML (``save_curves``).
"""

import re
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from src.tracking import TrackerLike

_LAYER = re.compile(r"^(.*?\.layers\.\d+)\.")


def parameter_group(name: str) -> str:
    """``decoder.layers.2.cross_attn.w_q.weight`` -> ``decoder.layers.2``; ``generator.bias`` ->
    ``generator``."""
    match = _LAYER.match(name)
    return match.group(1) if match else name.split(".")[0]


def grouped_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each layer / module group (parameters without a gradient skipped)."""
    groups: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, p in model.named_parameters():
        if p.grad is not None:
            groups[parameter_group(name)].append(p.grad)
    norms = {}
    for group, grads in groups.items():
        per_tensor = torch._foreach_norm(grads)  # one fused kernel per group
        norms[group] = torch.linalg.vector_norm(torch.stack(per_tensor)).item()
    return norms


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters of ``model`` (a tied weight counts once, as ``parameters()`` yields it once)."""
    return sum(p.numel() for p in model.parameters())


def parameter_norm(model: nn.Module) -> float:
    params = [p.detach() for p in model.parameters()]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params))).item()


class UpdateRatio:
    """``||theta_after - theta_before|| / ||theta_before||`` for one optimizer step.

    A healthy ratio sits around 1e-3 (Karpathy's rule of thumb); far above means the learning
    rate is too high, far below that learning has stalled.
    """

    def __init__(self) -> None:
        self._before: list[torch.Tensor] | None = None

    def snapshot(self, model: nn.Module) -> None:
        self._before = [p.detach().clone() for p in model.parameters()]

    def ratio(self, model: nn.Module) -> float | None:
        if self._before is None:
            return None
        after = [p.detach() for p in model.parameters()]
        deltas = torch._foreach_sub(after, self._before)
        update = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(deltas)))
        before = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self._before)))
        self._before = None
        return (update / before.clamp_min(1e-12)).item()


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

    def before_step(self, model: nn.Module, step: int) -> bool:
        """Keep the weights before the step that ends at ``step`` if it is measured; say whether it is."""
        if measure := self.measures(step):
            self.update_ratio.snapshot(model)
        return measure

    def log_gradients(self, model: nn.Module, tracker: TrackerLike, total_norm: float,
                      step: int) -> None:
        """The total gradient norm; at measured steps also each layer's, added to the heatmap's history."""
        tracker.log_scalar("grad_norm", "total", total_norm, step)
        if not self.measures(step):
            return
        norms = grouped_grad_norms(model)
        tracker.log_scalars("grad_norm_by_layer", norms, step)
        self.grad_steps.append(step)
        for group, value in norms.items():
            self.grad_history.setdefault(group, []).append(value)

    def log_update_ratio(self, model: nn.Module, tracker: TrackerLike, step: int) -> None:
        """``||update|| / ||weights||`` of the step just taken (weights kept by ``before_step``)."""
        tracker.log_scalar("update_ratio", "update/param", self.update_ratio.ratio(model), step)

    def log_heatmap(self, tracker: TrackerLike, step: int) -> None:
        """The per-layer gradient norms of the whole run as one layer x step heatmap, if any were taken."""
        if not self.grad_steps:
            return
        from src.visualization import plot_grad_norm_heatmap

        groups = list(self.grad_history)  # model order: embeddings, encoder, decoder, generator
        matrix = [self.grad_history[g] for g in groups]
        figure = plot_grad_norm_heatmap(groups, self.grad_steps, matrix)
        tracker.log_figure("gradient norms", "layer x step", figure, step)


def save_curves(history: list[dict[str, float]], run_dir: Path, step: int) -> None:
    """Loss (train and valid) and learning-rate curves as PNG in the run folder, for offline readers."""
    from src.visualization.local_plots import close_figure, save_png
    from src.visualization import training_curve_figures

    for name, figure in training_curve_figures(history).items():
        try:
            save_png(figure, run_dir, "curves", name, step)
        finally:
            close_figure(figure)
