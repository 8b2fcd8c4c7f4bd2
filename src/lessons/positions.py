"""Positional encoding: the sinusoid matrix, dot products between positions, attention without positions.

Uses ``sinusoidal_table`` and ``SinusoidalPositionalEncoding`` (``src/components/positional_encoding.py``)
and a real ``EncoderLayer`` (``src/models/layers.py``).
"""

import math

import torch

from src.components.positional_encoding import SinusoidalPositionalEncoding, sinusoidal_table
from src.lessons.plots import heatmap, line_plot
from src.lessons.step import Knob, Step, StepResult
from src.models.layers import EncoderLayer

N_POSITIONS = 64
OFFSETS = (0, 1, 2, 4, 8, 16)


def sinusoids(d_model: int) -> StepResult:
    """The table PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), checked against the
    formula."""
    table = sinusoidal_table(N_POSITIONS, d_model)
    pos = torch.arange(N_POSITIONS, dtype=torch.float64)[:, None]
    i = torch.arange(d_model, dtype=torch.float64)[None]
    angle = pos / 10000 ** ((2 * (i // 2)) / d_model)  # (P, 1) / (1, C) -> (P, C)
    formula = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    error = float((table.double() - formula).abs().max())
    wavelengths = [2 * math.pi * 10000 ** (2 * k / d_model) for k in (0, d_model // 4, d_model // 2 - 1)]
    return StepResult(
        outcome=f"d_model={d_model}: {N_POSITIONS} x {d_model} table, max |table - formula| = {error:.1e}; "
                f"wavelengths from {wavelengths[0]:.1f} to {wavelengths[-1]:.0f} positions",
        metrics={"formula_error": error, "shortest_wavelength": wavelengths[0],
                 "longest_wavelength": wavelengths[-1]},
        columns=("dimension pair", "wavelength (positions)"),
        rows=[[f"2i={2 * k}", w] for k, w in zip((0, d_model // 4, d_model // 2 - 1), wavelengths,
                                                 strict=True)],
        figures={"sinusoids": heatmap(table, [str(p) if p % 8 == 0 else "" for p in range(N_POSITIONS)],
                                      [str(c) if c % 8 == 0 else "" for c in range(d_model)],
                                      f"sinusoidal positional encoding, d_model={d_model}", cmap="RdBu",
                                      xlabel="dimension", ylabel="position")})


def dot_products(position: int) -> StepResult:
    """PE(p) . PE(p + k) falls as the offset k grows, and is the same for every p: it sees only the offset."""
    table = sinusoidal_table(2 * N_POSITIONS + max(OFFSETS), 64).double()
    gram = table @ table.T  # (P, P)
    rows, dots = [], []
    for k in OFFSETS:
        same_offset = torch.diagonal(gram, offset=k)[:N_POSITIONS]  # PE(p) . PE(p + k) for p < 64
        dots.append(float(gram[position, position + k]))
        rows.append([k, dots[-1], float(same_offset.max() - same_offset.min())])
    spread = max(r[2] for r in rows)
    return StepResult(
        outcome=f"from position {position}: dot product {dots[0]:.1f} at offset 0, {dots[1]:.1f} at 1, "
                f"{dots[3]:.1f} at 4, {dots[-1]:.1f} at 16; for a fixed offset it varies by at most "
                f"{spread:.1e} over the positions",
        metrics={**{f"dot_offset_{k}": d for k, d in zip(OFFSETS, dots, strict=True)},
                 "offset_spread": spread},
        columns=("offset k", f"PE({position}) . PE({position}+k)", "spread over p"), rows=rows,
        figures={"dot_products": heatmap(gram[:N_POSITIONS, :N_POSITIONS],
                                         [str(p) if p % 8 == 0 else "" for p in range(N_POSITIONS)],
                                         [str(p) if p % 8 == 0 else "" for p in range(N_POSITIONS)],
                                         "PE(p) . PE(q), d_model=64", xlabel="q", ylabel="p"),
                 "by_offset": line_plot(list(range(N_POSITIONS)),
                                        {"PE(p).PE(p+k)":
                                         gram[position, position:position + N_POSITIONS].tolist()},
                                        "offset k", "dot product", f"from position {position}")})


def permutation(positions: bool) -> StepResult:
    """Permute the tokens: without positions the encoder layer's outputs are permuted the same way,
    exactly."""
    torch.manual_seed(0)
    layer = EncoderLayer(32, 4, 64, 0.0, 0.0, "relu", False, 1e-5, "math").eval()
    encoding = SinusoidalPositionalEncoding(32, 16)
    x = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(2))

    def mismatch(with_positions: bool) -> torch.Tensor:
        """Per token, max |f(x)[perm] - f(x[perm])|. Shape: (T,)."""
        def encode(tokens: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return layer(encoding(tokens) if with_positions else tokens, None)[0]

        return (encode(x)[:, order] - encode(x[:, order])).abs().amax(-1)[0]

    per_token = {"positions on": mismatch(True), "positions off": mismatch(False)}
    difference = float(per_token["positions on" if positions else "positions off"].max())
    figure = line_plot(list(range(8)), {k: v.clamp_min(1e-9).tolist() for k, v in per_token.items()},
                       "token (in permuted order)", "max |f(x)[perm] - f(x[perm])|",
                       "permutation equivariance of an encoder layer", log_y=True)
    return StepResult(
        outcome=f"positions {'on' if positions else 'off'}: max |f(x)[perm] - f(x[perm])| = {difference:.2e} "
                + ("(not equivariant: order matters)" if difference > 1e-4
                   else "(permutation-equivariant: order is invisible)"),
        metrics={"equivariance_error": difference},
        columns=("", "value"), rows=[["permutation", order.tolist()], ["max difference", difference]],
        figures={"equivariance": figure})


STEPS = [
    Step("the sinusoid matrix", """
Attention compares every token with every other and has no notion of order. The Transformer adds
to each token embedding a vector that depends on its position (Sec. 3.5): sines and cosines whose
wavelengths grow geometrically from 2 pi to 10000 * 2 pi across the dimensions, so low dimensions
change fast with position and high ones slowly.""", sinusoids,
         Knob("d_model", 64, "table width, an even number", low=2, high=1024)),
    Step("dot products between positions", """
The dot product PE(p) . PE(p + k) is a sum of cos(k w_i): it depends only on the offset k, not on
p, and it is largest at k = 0 and falls (with ripples) as k grows. Attention can therefore read
relative distance from the encodings.""", dot_products,
         Knob("position", 10, "start position, 0-63", low=0, high=63)),
    Step("attention without positions", """
Without positional encodings, self-attention and the feed-forward network treat the input as a
set: permuting the tokens permutes the outputs in the same way and changes nothing else
(permutation equivariance). 'dog bites man' and 'man bites dog' would look alike. Adding the
sinusoids breaks this symmetry.""", permutation, Knob("positions", False, "on or off")),
]
