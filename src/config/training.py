"""Optimisation settings (Sec. 5.3-5.4)."""

from typing import Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, confloat

from src.config.base import FrozenConfig


class TrainingConfig(FrozenConfig):
    """The explicit training loop's knobs."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: PositiveInt = 2000
    max_minutes: PositiveFloat | None = None  # wall-clock budget; stops cleanly when reached
    lr: PositiveFloat = 7e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: PositiveFloat = 1e-9
    weight_decay: confloat(ge=0.0) = 0.0
    schedule: Literal["inverse_sqrt", "cosine"] = "inverse_sqrt"
    warmup_steps: NonNegativeInt = 100
    label_smoothing: confloat(ge=0.0, lt=1.0) = 0.1
    grad_clip: PositiveFloat | None = 1.0
    grad_accum_steps: PositiveInt = 1
    log_every: PositiveInt = 10
    eval_every: PositiveInt = 200
    checkpoint_every: PositiveInt = 200
    keep_checkpoints: PositiveInt = 2
