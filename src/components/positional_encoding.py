"""Positional encodings added to the token embeddings (Vaswani et al. 2017, Sec. 3.5).

Both classes take the embedded sequence and the position of its first token (``start``, non-zero
when decoding one token at a time with a cache) and return the sum.
"""

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(max_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    Shape:
        output: (max_positions, d_model).
    """
    position = torch.arange(max_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(C/2),)
    inv_freq = torch.exp(two_i * (-math.log(10000.0) / d_model))  # 1 / 10000^(2i/d_model)
    angles = position * inv_freq  # (P, 1) * (ceil(C/2),) -> (P, ceil(C/2))
    table = torch.zeros(max_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # an odd d_model has one cosine column fewer
    return table.float()


def _check_length(start: int, length: int, max_positions: int) -> None:
    if start + length > max_positions:
        raise ValueError(
            f"sequence needs positions up to {start + length}, longer than max_positions={max_positions} "
            f"(expected start + length <= {max_positions}, got start={start}, length={length})"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoids (Sec. 3.5); no parameters, the table is a non-persistent buffer.

    Args:
        d_model: model width C.
        max_positions: longest sequence accepted.
    """

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.register_buffer("table", sinusoidal_table(max_positions, d_model), persistent=False)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Shape: x: (B, T, C) -> (B, T, C)."""
        _check_length(start, x.size(1), self.max_positions)
        return x + self.table[start : start + x.size(1)].to(x.dtype)


class LearnedPositionalEncoding(nn.Module):
    """One learned vector per position, the alternative of Sec. 3.5 (Table 3, row E).

    Args:
        d_model: model width C.
        max_positions: longest sequence accepted.
    """

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Shape: x: (B, T, C) -> (B, T, C)."""
        _check_length(start, x.size(1), self.max_positions)
        return x + self.table.weight[start : start + x.size(1)]


class PositionsInAttention(nn.Module):
    """The ``positional`` slot when positions live inside attention (RoPE, ALiBi): it adds nothing.

    Args:
        max_positions: longest sequence the model takes.
    """

    def __init__(self, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Shape: x: (B, T, C) -> the same x."""
        return x
