"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", Sec. 3.2-3.4).

Instead of adding a position vector to the token embedding, RoPE rotates each query and key by an
angle proportional to its position m. Pairs of head dimensions (x_i, x_{i+D/2}) are read as one
complex number and multiplied by e^{i m θ_i} (Eq. 12, the complex form), with θ_i = base^{-2i/D}
(Eq. 15, where the block-diagonal real matrix R^d_{Θ,m} writes the same rotation; Eq. 34 is its
element-wise form, x ⊗ cos(mθ) + rotate(x) ⊗ sin(mθ), used here). A rotation keeps the norm, and
the dot product of a query rotated by m with a key rotated by n depends on m - n only:

    <R_m q, R_n k> = Re[(q e^{i m θ}) conj(k e^{i n θ})] = Re[q conj(k) e^{i (m - n) θ}]   (Eq. 12, 16)

so attention scores see relative positions although each vector is rotated by its absolute one.

Pairing: the paper pairs adjacent dimensions (x_1, x_2), (x_3, x_4), ...; GPT-NeoX and Llama pair
the two halves (x_i, x_{i+D/2}), the ``rotate_half`` layout. The two differ by a fixed permutation
of the head dimensions, which W^Q and W^K absorb, so they are the same model family; this module
uses the halves so that Hugging Face Llama weights copy unchanged.

Letters: B batch, H heads, T new positions, D head width.
"""

import torch
from torch import Tensor, nn

from src.components.positional_encoding import _check_length


def rotary_angles(max_positions: int, head_dim: int, base: float = 10000.0) -> Tensor:
    """m θ_i for every position m and pair i, θ_i = base^{-2i/D} (Eq. 15), computed in float64.

    Shape:
        output: (max_positions, D/2).
    """
    if head_dim % 2 != 0:
        raise ValueError(f"rotary embedding rotates pairs of dimensions: "
                         f"head_dim must be even, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # θ_i, (D/2,)
    position = torch.arange(max_positions, dtype=torch.float64)[:, None]  # (P, 1)
    return position * inv_freq  # (P, 1) * (D/2,) -> (P, D/2)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """(x_i + i x_{i+D/2}) e^{i m θ_i} written in reals (Eq. 34 with the halves pairing).

    Shape:
        x: (..., T, D); cos, sin: (T, D/2) -> (..., T, D).
    """
    first, second = x.chunk(2, dim=-1)  # (..., T, D) -> 2 x (..., T, D/2): real and imaginary parts
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class RotaryPositionEmbedding(nn.Module):
    """Rotate per-head queries or keys by their positions ``start .. start + T - 1`` (RoFormer Eq. 34).

    No parameters: cos(m θ_i) and sin(m θ_i) are non-persistent buffers. Attention applies it to the
    queries and keys of self-attention before the keys enter the cache, so a cache holds rotated keys
    and a decoding step rotates only its new query and key, at ``start`` = the cached length.

    Args:
        head_dim: D, the per-head width (even).
        max_positions: longest sequence accepted.
        base: the 10000 of θ_i = base^{-2i/D} (Llama 3 uses 500000).
    """

    def __init__(self, head_dim: int, max_positions: int, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim, self.max_positions, self.base = head_dim, max_positions, base
        angles = rotary_angles(max_positions, head_dim, base)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Shape: x: (B, H, T, D) -> (B, H, T, D); position of x[..., t, :] is start + t."""
        _check_length(start, x.size(-2), self.max_positions)
        end = start + x.size(-2)
        return rotate(x, self.cos[start:end].to(x.dtype), self.sin[start:end].to(x.dtype))
