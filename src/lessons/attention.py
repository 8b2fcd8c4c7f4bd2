"""Scaled dot-product attention: queries, keys, values, and why the scores are divided by sqrt(d_k).

Every experiment calls the project's ``MultiHeadAttention`` and ``scaled_dot_product_attention``
(``src/components``), the same code the models train with.
"""

import math

import torch

from src.components.attention import MultiHeadAttention
from src.components.scaled_dot_product_attention import scaled_dot_product_attention
from src.lessons.plots import heatmap, line_plot
from src.lessons.step import Knob, Step, StepResult

SENTENCE = ("the", "cat", "sat", "on", "the", "mat")
D_KS = (4, 16, 64, 256)


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each attention row: ln(S) when uniform, 0 when one-hot.

    Shape: (..., S) -> (...).
    """
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1)


def _sentence_embeddings(d_model: int) -> torch.Tensor:
    """One fixed random vector per word (the same word gets the same vector), (1, T, C)."""
    generator = torch.Generator().manual_seed(0)
    table = {word: torch.randn(d_model, generator=generator) for word in dict.fromkeys(SENTENCE)}
    return torch.stack([table[w] for w in SENTENCE])[None]


def qkv(query_position: int) -> StepResult:
    """Q, K and V of a toy sentence through one real attention head; one query's weights in detail.

    The layer's weights and output are checked against Eq. 1 written out by hand from its own
    projections: softmax(Q K^T / sqrt(d_k)), then the weighted mean of V through the output projection.
    """
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_model=16, n_heads=1, backend="math").eval()
    x = _sentence_embeddings(16)
    with torch.no_grad():
        output, weights = attention(x, need_weights=True)  # (1, T, C), (1, 1, T, T)
        q, k, v = attention.in_proj(x)[0].chunk(3, dim=-1)  # (1, T, 3C) -> three (T, C): one head
        by_hand = (q @ k.T / math.sqrt(q.size(-1))).softmax(-1)  # Eq. 1, (T, T)
        output_by_hand = attention.out_proj(by_hand @ v)  # (T, C)
    eq1_error = float((weights[0, 0] - by_hand).abs().max())
    output_error = float((output[0] - output_by_hand).abs().max())
    row = weights[0, 0, query_position]
    rows = [[f"{i} {w}", float(row[i])] for i, w in enumerate(SENTENCE)]
    focus = int(row.argmax())
    figure = heatmap(weights[0, 0], SENTENCE, SENTENCE,
                     "attention weights softmax(QK^T/sqrt(d_k)) of one head")
    return StepResult(
        outcome=f"query '{SENTENCE[query_position]}' (position {query_position}) puts most weight, "
                f"{float(row.max()):.2f}, on '{SENTENCE[focus]}' (position {focus}); the layer agrees with "
                f"Eq. 1 computed by hand to {eq1_error:.1e} (weights) and {output_error:.1e} (output)",
        metrics={"max_weight": float(row.max()), "eq1_weight_error": eq1_error,
                 "eq1_output_error": output_error},
        columns=("key", f"weight from '{SENTENCE[query_position]}'"), rows=rows, figures={"heatmap": figure})


def _saturation(d_k: int, scale: bool, generator: torch.Generator) -> tuple[float, float, float]:
    """(mean max weight, mean entropy, score variance) of 64 queries over 32 keys with N(0, 1) entries."""
    q = torch.randn(1, 1, 64, d_k, generator=generator)
    k = torch.randn(1, 1, 32, d_k, generator=generator)
    v = torch.randn(1, 1, 32, d_k, generator=generator)
    # scaled_dot_product_attention divides by sqrt(d_k): multiplying q by it first undoes the scaling
    query = q if scale else q * math.sqrt(d_k)
    _, weights = scaled_dot_product_attention(query, k, v)
    scores = query @ k.transpose(-2, -1) / math.sqrt(d_k)  # what the softmax saw
    return float(weights.max(-1).values.mean()), float(entropy(weights).mean()), float(scores.var())


def scaling(d_k: int) -> StepResult:
    """The softmax of unscaled scores saturates as d_k grows; scaled scores keep unit variance."""
    generator = torch.Generator().manual_seed(0)
    rows, metrics = [], {}
    for d in sorted({*D_KS, d_k}):
        scaled = _saturation(d, True, generator)
        unscaled = _saturation(d, False, generator)
        rows.append([d, scaled[2], unscaled[2], scaled[0], unscaled[0], scaled[1], unscaled[1]])
        if d == d_k:
            metrics = {"max_weight_scaled": scaled[0], "max_weight_unscaled": unscaled[0],
                       "entropy_scaled": scaled[1], "entropy_unscaled": unscaled[1],
                       "score_var_scaled": scaled[2], "score_var_unscaled": unscaled[2]}
    ds = [r[0] for r in rows]
    figure = line_plot(ds, {"scaled": [r[5] for r in rows], "unscaled": [r[6] for r in rows],
                            "uniform ln(32)": [math.log(32)] * len(ds)},
                       "d_k", "mean entropy of a row (nats)", "softmax saturation against d_k", log_x=True)
    return StepResult(
        outcome=f"d_k={d_k}: unscaled max weight {metrics['max_weight_unscaled']:.3f}, entropy "
                f"{metrics['entropy_unscaled']:.3f} nats; scaled max weight "
                f"{metrics['max_weight_scaled']:.3f}, entropy {metrics['entropy_scaled']:.3f} nats (uniform: "
                f"{math.log(32):.3f})",
        metrics=metrics,
        columns=("d_k", "score var scaled", "score var unscaled", "max w scaled", "max w unscaled",
                 "entropy scaled", "entropy unscaled"),
        rows=rows, figures={"saturation": figure})


def temperature(t: float) -> StepResult:
    """Dividing the scores by a temperature: low sharpens toward argmax, high flattens toward uniform."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_model=16, n_heads=1, backend="math").eval()
    x = _sentence_embeddings(16)
    with torch.no_grad():
        # (1, T, 3C) -> three (1, T, C) -> (1, 1, T, C): one head, so the head width is C
        q, k, v = (part[:, None] for part in attention.in_proj(x).chunk(3, dim=-1))
        _, weights = scaled_dot_product_attention(q / t, k, v)
    row_entropy = entropy(weights[0, 0])
    figure = heatmap(weights[0, 0], SENTENCE, SENTENCE, f"attention weights at temperature {t:g}")
    return StepResult(
        outcome=f"temperature {t:g}: mean entropy {float(row_entropy.mean()):.3f} nats "
                f"(uniform {math.log(len(SENTENCE)):.3f}), mean max weight "
                f"{float(weights.max(-1).values.mean()):.3f}",
        metrics={"mean_entropy": float(row_entropy.mean()),
                 "mean_max_weight": float(weights.max(-1).values.mean())},
        columns=("query", "entropy (nats)", "max weight"),
        rows=[[w, float(row_entropy[i]), float(weights[0, 0, i].max())] for i, w in enumerate(SENTENCE)],
        figures={"heatmap": figure})


STEPS = [
    Step("queries, keys and values", """
Each token is projected three ways: a query (what it looks for), a key (what it offers) and a
value (what it passes on). Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (Vaswani et al. 2017,
Eq. 1): the score of query i against key j is their dot product, a softmax turns each row into
weights that sum to 1, and the output is the weighted mean of the values. Here one head of the
project's MultiHeadAttention reads 'the cat sat on the mat'; both 'the' have the same vector, so
they attend identically.""", qkv, Knob("position", 1, "which query's row to list, 0-5", low=0, high=5)),
    Step("why divide by sqrt(d_k)", """
With entries of variance 1, a dot product of d_k terms has variance d_k. Large scores push the
softmax into saturation: one weight near 1, the rest near 0, and gradients that vanish (Sec. 3.2.1).
Dividing by sqrt(d_k) brings the variance back to 1. We measure the mean largest weight and the
mean entropy of each row with and without the division.""", scaling,
         Knob("d_k", 64, "key width, e.g. 1024: the unscaled softmax saturates further", low=1, high=4096)),
    Step("temperature", """
The division is one temperature among many: scores / T. Below 1 the weights sharpen toward the
argmax, above 1 they flatten toward uniform. The same dial sets how adventurous sampling is when a
language model generates text.""", temperature,
         Knob("temperature", 1.0, "e.g. 0.1 sharpens, 10 flattens", low=1e-3)),
]
