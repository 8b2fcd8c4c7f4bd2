"""Dropout (Srivastava et al. 2014) with a cheaper random mask, for the attention weights of long texts.

``F.dropout`` draws one float per element (``bernoulli_``): about 15 ns an element on a CPU core, so on a
(B, H, T, T) block of attention weights the mask costs as much as the matmuls around it. Here 64 random bits
are drawn at a time and read as four 16-bit uniforms, about 3 ns an element: an element is kept when its
16-bit draw is at least ``round(p * 65536)``, so the drop rate is ``p`` rounded to 1/65536 (0.1 becomes
0.100006) and the kept elements are scaled by the inverse of that exact keep rate, as dropout requires.
"""

import torch
from torch import Tensor, nn

LEVELS = 1 << 16  # a 16-bit draw: p is rounded to a multiple of 1 / 65536


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> Tensor:
    """A boolean mask, True (kept) with probability ``1 - round(p * 65536) / 65536``, from the default
    generator (``torch.manual_seed`` repeats it)."""
    numel = int(torch.Size(shape).numel())
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    draws = words.view(torch.int16)[:numel].view(shape)  # uniform over [-32768, 32767]
    return draws >= round(p * LEVELS) - LEVELS // 2


def dropped(x: Tensor, p: float) -> tuple[Tensor, float]:
    """``x`` with its dropped elements zeroed, and the scale 1 / (1 - p) the kept ones need: dropout is the
    product, and a caller can apply the scale to a smaller tensor further on (``(W * mask) @ V * scale``).

    Shape: any -> the same.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got p={p}")
    return x * keep_mask(x.shape, p, x.device), LEVELS / (LEVELS - round(p * LEVELS))


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with the 16-bit mask above.

    Shape: any -> the same.
    """
    if not training or p == 0.0:
        return x
    kept, scale = dropped(x, p)
    return kept * scale


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the 16-bit mask above (the same ``p``, train/eval switch and ``repr``)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
