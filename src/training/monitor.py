"""What a researcher looks at to see *why* training behaves: gradient, parameter and update norms."""

import re
from collections import defaultdict

import torch
from torch import nn

_LAYER = re.compile(r"^(.*?\.layers\.\d+)\.")


def parameter_group(name: str) -> str:
    """``decoder.layers.2.cross_attn.w_q.weight`` -> ``decoder.layers.2``; ``generator.bias`` -> ``generator``."""
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
