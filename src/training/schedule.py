"""Learning-rate schedules as multipliers of the peak rate, for ``torch.optim.lr_scheduler.LambdaLR``."""

import math
from collections.abc import Callable


def inverse_sqrt(warmup_steps: int) -> Callable[[int], float]:
    """Sec. 5.3: linear warm-up, then decay with the inverse square root of the step number.

    The paper writes ``d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)``; here the constant is
    folded into the configured peak rate so the multiplier reaches exactly 1.0 at ``warmup_steps``.
    """
    warmup = max(warmup_steps, 1)

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))

    return factor


def cosine(warmup_steps: int, total_steps: int, min_factor: float = 0.05) -> Callable[[int], float]:
    """Linear warm-up, then half a cosine from 1.0 down to ``min_factor`` at ``total_steps``."""
    warmup = max(warmup_steps, 1)
    total = max(total_steps, warmup + 1)

    def factor(step: int) -> float:
        step = max(step, 1)
        if step < warmup:
            return step / warmup
        progress = min((step - warmup) / (total - warmup), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_schedule(name: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    if name == "inverse_sqrt":
        return inverse_sqrt(warmup_steps)
    if name == "cosine":
        return cosine(warmup_steps, total_steps)
    raise ValueError(f"unknown schedule {name!r} (expected 'inverse_sqrt' or 'cosine')")
