"""Attention-head analysis: per-head entropy, previous-token heads in a tiny LM, alignment heads in translation.

Trains the project's decoder-only LM (``src/models/decoder_lm.py``) and reuses the encoder-decoder
of the multi-head lesson; the weights come from the models' own ``return_attention``.
"""

from functools import lru_cache

import torch

from src.lessons import toy
from src.lessons.attention import entropy
from src.lessons.multi_head import N_SYMBOLS as SEQ2SEQ_SYMBOLS
from src.lessons.multi_head import pattern_scores, trained
from src.lessons.plots import heatmap
from src.lessons.step import Knob, Step, StepResult
from src.visualization.attention import plot_attention

LENGTH, N_SYMBOLS, TRAIN_STEPS = 16, 10, 200


@lru_cache(maxsize=4)
def trained_lm(n_heads: int, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """A 2-layer LM trained on the "skip" pattern (a, b, a+1, b+1, ...): the next token is the one
    before the current one, plus 1."""
    model = toy.lm_model(toy.lm_config(n_heads=n_heads), N_SYMBOLS, seed)
    log = toy.train(model, toy.lm_loss("skip", LENGTH, N_SYMBOLS), steps=TRAIN_STEPS, lr=1e-2, seed=seed,
                    warmup_steps=20)
    return model, log.losses


def head_statistics(weights: list[torch.Tensor]) -> torch.Tensor:
    """Per (layer, head): mean entropy, and mean weight on the previous token (key t-1 from query t).

    Shape: weights: L tensors (B, H, T, T) -> (L, H, 2), queries from position 1 on.
    """
    stats = []
    for layer in weights:
        previous = torch.diagonal(layer, offset=-1, dim1=-2, dim2=-1)  # (B, H, T-1): query t, key t-1
        stats.append(torch.stack([entropy(layer[:, :, 1:]).mean(dim=(0, 2)), previous.mean(dim=(0, 2))], -1))
    return torch.stack(stats)


def previous_token(n_heads: int) -> StepResult:
    """Which heads of a trained LM attend to the previous token, and how sharply."""
    model, losses = trained_lm(n_heads)
    tokens = toy.lm_batch("skip", 32, LENGTH, N_SYMBOLS, torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, weights = model(tokens[:, :-1], return_attention=True)
    accuracy = float((logits.argmax(-1) == tokens[:, 1:])[:, 2:].float().mean())  # from the third token on
    stats = head_statistics(weights)  # (L, H, 2)
    layer, head = divmod(int(stats[..., 1].argmax()), n_heads)
    best = float(stats[layer, head, 1])
    uniform = float(sum(1 / (t + 1) for t in range(1, LENGTH - 1)) / (LENGTH - 2))  # causal uniform share
    names = toy.symbols(N_SYMBOLS)
    labels = [names[i] for i in tokens[0, :-1].tolist()]
    rows = [[f"layer {li} head {h}", float(stats[li, h, 0]), float(stats[li, h, 1])]
            for li in range(stats.size(0)) for h in range(n_heads)]
    return StepResult(
        outcome=f"{n_heads} heads: layer {layer} head {head} puts {best:.0%} of its weight on the previous token "
                f"(a uniform causal head: {uniform:.0%}); next-token accuracy {accuracy:.0%} after {len(losses)} steps",
        metrics={"best_previous_token_weight": best, "uniform_previous_token_weight": uniform,
                 "next_token_accuracy": accuracy, "best_head_entropy": float(stats[layer, head, 0])},
        columns=("head", "mean entropy (nats)", "weight on previous token"), rows=rows,
        figures={"heads": plot_attention(torch.stack([w[0] for w in weights]), labels, labels,
                                         "decoder-only LM on a, b, a+1, b+1, ...", label_every_head=False),
                 "statistics": heatmap(stats[..., 1], [f"layer {i}" for i in range(stats.size(0))],
                                       [f"head {h}" for h in range(n_heads)], "weight on the previous token",
                                       xlabel="head", ylabel="layer")},
        curves={"loss": losses})


def alignment(task: str) -> StepResult:
    """Cross-attention heads of the trained toy translator: entropy and how often each reads the aligned source."""
    model, _ = trained(task)
    scores = pattern_scores(model, task)
    src, tgt_in, _ = toy.reverse_batch(64, 6, SEQ2SEQ_SYMBOLS, task, torch.Generator().manual_seed(123))
    with torch.no_grad():
        _, attention = model(src, tgt_in, return_attention=True)
    cross = attention["cross"][-1][:, :, :6]  # (B, H, T, S), the symbol positions
    head_entropy = entropy(cross).mean(dim=(0, 2))
    best = int(scores.argmax())
    return StepResult(
        outcome=f"{task}: head {best} reads the aligned source word {float(scores[best]):.0%} of the time with "
                f"entropy {float(head_entropy[best]):.2f} nats (uniform over 6 words: 1.79)",
        metrics={"best_alignment": float(scores[best]), "best_alignment_entropy": float(head_entropy[best])},
        columns=("head", "reads the aligned word", "mean entropy (nats)"),
        rows=[[h, float(scores[h]), float(head_entropy[h])] for h in range(scores.numel())],
        figures={"alignment": heatmap(cross[:, best].mean(0), [f"t={t}" for t in range(6)],
                                      [f"s={s}" for s in range(6)],
                                      f"head {best}: mean cross-attention over 64 sentences",
                                      xlabel="source position", ylabel="target position")})


STEPS = [
    Step("previous-token heads", """
Different heads learn different jobs. A 2-layer language model is trained for a few seconds on
sequences a, b, a+1, b+1, a+2, ...: to predict the next token, position t must read the token at
t-1. We measure each head's entropy (how spread its attention is) and the weight it puts on the
previous token: first-layer heads become previous-token heads, while the second layer looks elsewhere.""", previous_token,
         Knob("n_heads", 2, "heads per layer: 1, 2, 4, 8", low=1, high=32)),
    Step("alignment heads", """
In translation a cross-attention head often aligns each target word with its source word. In the
toy reverse task the alignment is known exactly (target t reads source 5-t), so we can score each
head by how often its peak is on the aligned word.""", alignment, Knob("task", "reverse", "copy or reverse",
                                                                       choices=("copy", "reverse"))),
]
