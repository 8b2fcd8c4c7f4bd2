"""Efficient attention: the sliding-window (Longformer band) mask, its exactness, and its cost against full attention.

Uses the project's ``MultiHeadAttention`` with ``attention="sliding_window"`` (the blocked O(n w)
computation of ``src/components/sliding_window_attention.py``) and its dense reference ``band_mask``.
"""

import math
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from src.components.attention import MultiHeadAttention
from src.components.scaled_dot_product_attention import scaled_dot_product_attention
from src.components.sliding_window_attention import band_mask, sliding_window_attention
from src.lessons.plots import heatmap, line_plot
from src.lessons.step import Knob, Step, StepResult

LENGTHS = (256, 512, 1024, 2048)
D_MODEL, HEADS, REPEATS = 32, 2, 5


def _pair(window: int) -> tuple[MultiHeadAttention, MultiHeadAttention]:
    """A sliding-window layer and a full one with the same weights."""
    torch.manual_seed(0)
    sliding = MultiHeadAttention(D_MODEL, HEADS, attention="sliding_window", window=window).eval()
    full = MultiHeadAttention(D_MODEL, HEADS).eval()
    full.load_state_dict(sliding.state_dict())
    return sliding, full


def band(window: int) -> StepResult:
    """The band mask, and the blocked computation against full attention restricted to the band.

    The output comes from a call without weights, the fused blocked path that training runs; the
    weights for the figure come from a second call (``need_weights`` takes the math path) and are
    checked against the dense reference: full attention's own softmax under ``band_mask``.
    """
    sliding, full = _pair(window)
    length = 48
    x = torch.randn(2, length, D_MODEL, generator=torch.Generator().manual_seed(1))
    mask = band_mask(length, length, window)
    with torch.no_grad():
        blocked = sliding(x)[0]  # no weights asked: the fused blocked kernel
        _, weights = sliding(x, need_weights=True)  # the math path, for the heatmap
        dense, dense_weights = full(x, mask=mask, need_weights=True)
        unrestricted = full(x)[0]
    error = float((blocked - dense).abs().max())
    weight_error = float((weights - dense_weights).abs().max())
    differs = float((blocked - unrestricted).abs().max())
    seen = int(mask.sum())
    return StepResult(
        outcome=f"window {window}: each token sees at most {2 * window + 1} of {length}; the fused blocked "
                f"sliding window equals dense attention under the band mask to {error:.1e}, its weights "
                f"equal the dense masked softmax to {weight_error:.1e}; against unrestricted full attention "
                f"it differs by {differs:.2f}",
        metrics={"band_error": error, "weight_error": weight_error, "difference_from_full": differs,
                 "band_fraction": seen / length**2},
        columns=("", "value"),
        rows=[["scores in the band", seen], ["scores of full attention", length**2],
              ["max |fused blocked - dense band|", error],
              ["max |blocked weights - dense band weights|", weight_error],
              ["max |sliding - full|", differs]],
        figures={"band_mask": heatmap(mask.float(), [str(i) if i % 8 == 0 else "" for i in range(length)],
                                      [str(i) if i % 8 == 0 else "" for i in range(length)],
                                      f"band mask, window {window} (1 = may attend)", cmap="Greys"),
                 "weights": heatmap(weights[0, 0], [""] * length, [""] * length,
                                    "sliding-window attention weights, head 0")})


def _forward_ms(layer: MultiHeadAttention, x: torch.Tensor) -> float:
    """Median wall time of a forward pass over ``REPEATS`` runs, after one warm-up run."""
    times = []
    with torch.no_grad():
        layer(x)
        for _ in range(REPEATS):
            start = time.perf_counter()
            layer(x)
            times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def slope(lengths: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(length): 1 linear, 2 quadratic."""
    xs, ys = [math.log(v) for v in lengths], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def attention_flops(length: int, window: int | None) -> int:
    """FLOPs of the attention itself (scores and weighted sum, not the projections) at ``length``.

    Counted by ``FlopCounterMode`` on the math backend, which builds blocks like the fused kernel's
    (w queries and their 3w keys; the fused kernel sizes its blocks for speed) but with plain matmuls
    the counter sees (it has no formula for the fused CPU kernel).
    On the meta device: the shapes are traced and counted, nothing is computed. ``window`` None: full
    attention.
    """
    q = torch.empty(1, HEADS, length, D_MODEL // HEADS, device="meta")  # (B, H, T, C/H)
    with FlopCounterMode(display=False) as counter:
        if window is None:
            scaled_dot_product_attention(q, q, q)
        else:
            sliding_window_attention(q, q, q, window, backend="math")
    return counter.get_total_flops()


def cost(window: int) -> StepResult:
    """Attention FLOPs against length: full attention grows as n^2, the sliding window as n; wall time
    alongside."""
    sliding, full = _pair(window)
    rows, flops, times = [], {"full": [], "sliding window": []}, {"full": [], "sliding window": []}
    for n in LENGTHS:
        flops["full"].append(attention_flops(n, None))
        flops["sliding window"].append(attention_flops(n, window))
        x = torch.randn(1, n, D_MODEL, generator=torch.Generator().manual_seed(n))
        times["full"].append(_forward_ms(full, x))
        times["sliding window"].append(_forward_ms(sliding, x))
        rows.append([n, flops["full"][-1], flops["sliding window"][-1], times["full"][-1],
                     times["sliding window"][-1]])
    flop_slopes = {name: slope(list(LENGTHS), values) for name, values in flops.items()}
    time_slopes = {name: slope(list(LENGTHS), values) for name, values in times.items()}
    return StepResult(
        outcome=f"window {window}: attention FLOPs grow as n^{flop_slopes['full']:.2f} for full attention "
                f"and n^{flop_slopes['sliding window']:.2f} for the sliding window ({LENGTHS[0]} to "
                f"{LENGTHS[-1]} tokens); measured time as n^{time_slopes['full']:.2f} and "
                f"n^{time_slopes['sliding window']:.2f}, at n={LENGTHS[-1]} {times['full'][-1]:.1f} ms "
                f"against {times['sliding window'][-1]:.1f} ms",
        metrics={"flop_slope_full": flop_slopes["full"], "flop_slope_sliding": flop_slopes["sliding window"],
                 "flops_full_longest": flops["full"][-1],
                 "flops_sliding_longest": flops["sliding window"][-1],
                 "time_slope_full": time_slopes["full"], "time_slope_sliding": time_slopes["sliding window"],
                 "ms_full_longest": times["full"][-1], "ms_sliding_longest": times["sliding window"][-1]},
        columns=("n", "attention FLOPs full", "attention FLOPs sliding", "ms full", "ms sliding"), rows=rows,
        figures={"flops": line_plot(list(LENGTHS), flops, "sequence length n", "attention FLOPs",
                                    "full against sliding-window attention: work", log_x=True, log_y=True),
                 "cost": line_plot(list(LENGTHS), times, "sequence length n", "forward time (ms)",
                                   "full against sliding-window attention: time", log_x=True, log_y=True)})


STEPS = [
    Step("the band", """
Full self-attention scores all n^2 pairs of tokens. Sliding-window attention (Child et al. 2019;
Longformer, Beltagy et al. 2020) lets each token see only the w tokens on each side: a band around
the diagonal. The project computes it in blocks without ever building the n x n matrix; the dense
band mask is kept only as the reference it must equal.""", band,
         Knob("window", 4, "tokens seen on each side", low=1, high=47)),
    Step("cost against length", """
Blocks of w queries each attend to 3w keys, so the work is about 3 n w instead of n^2: linear in
the length for a fixed window. We count the attention's FLOPs at a few lengths with PyTorch's
FlopCounterMode and fit the log-log slope: exactly 2 for full attention, 1 for the sliding window.
We also time one forward pass of both layers; on a busy CPU the times are noisy, and at short
lengths fixed overheads hide the difference, so the FLOP count is the claim.""", cost,
         Knob("window", 32, "tokens seen on each side", low=1, high=512)),
]
