"""Multi-head attention: what splitting into heads does, and heads that learn to copy or reverse.

Uses the project's ``MultiHeadAttention`` and the encoder-decoder Transformer built by
``src/models/builders.py``, trained in seconds on a toy task (``src/lessons/toy.py``).
"""

from functools import lru_cache

import torch

from src.components.attention import MultiHeadAttention
from src.lessons import toy
from src.lessons.attention import SENTENCE, entropy
from src.lessons.plots import curves, heatmap
from src.lessons.step import Knob, Step, StepResult
from src.visualization.attention import plot_attention

LENGTH, N_SYMBOLS, STEPS_TRAINED = 6, 8, 250


def split(n_heads: int) -> StepResult:
    """The same width C cut into H heads of C/H: the parameter count does not change, the patterns do."""
    d_model = 32
    if d_model % n_heads:
        raise ValueError(f"n_heads must divide d_model={d_model}, got {n_heads}")
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_model, n_heads, backend="math").eval()
    x = torch.randn(1, len(SENTENCE), d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, weights = attention(x, need_weights=True)  # weights (1, H, T, T)
    n_params = sum(p.numel() for p in attention.parameters())
    head_entropy = entropy(weights[0]).mean(-1)  # (H, T) -> (H,)
    spread = (float((weights[0, :, None] - weights[0, None]).abs().amax(dim=(-1, -2)).max()) if n_heads > 1
              else 0.0)
    rows = [[h, d_model // n_heads, float(head_entropy[h]), int(weights[0, h, 1].argmax())]
            for h in range(n_heads)]
    return StepResult(
        outcome=f"{n_heads} heads of width {d_model // n_heads}: {n_params} parameters (the same for any H); "
                f"the heads' weights differ by up to {spread:.2f}; output {tuple(out.shape)}",
        metrics={"n_params": float(n_params), "head_dim": float(d_model // n_heads),
                 "max_head_difference": spread},
        columns=("head", "width C/H", "mean entropy (nats)", "argmax key of 'cat'"), rows=rows,
        figures={"heads": plot_attention(weights[0], SENTENCE, SENTENCE, f"{n_heads} heads, untrained")})


@lru_cache(maxsize=4)
def trained(task: str, steps: int = STEPS_TRAINED, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """A 1-layer, 2-head encoder-decoder trained on ``task`` ("copy" or "reverse"), and its losses."""
    model = toy.seq2seq_model(toy.tiny_config(), N_SYMBOLS, seed)
    log = toy.train(model, toy.seq2seq_loss(task, LENGTH, N_SYMBOLS), steps=steps, lr=3e-3, seed=seed,
                    warmup_steps=20, series=f"loss {task}")
    return model, log.losses


def expected_source(task: str, length: int = LENGTH) -> torch.Tensor:
    """The source position target position t should read: t for copy, L-1-t for reverse. Shape: (L,)."""
    positions = torch.arange(length)
    return positions if task == "copy" else positions.flip(0)


def pattern_scores(model: torch.nn.Module, task: str) -> torch.Tensor:
    """Per head, the share of (sentence, target position) where cross-attention peaks at the expected source.

    Shape: (H,), over 64 held-out sentences and the L symbol positions (EOS excluded).
    """
    src, tgt_in, _ = toy.reverse_batch(64, LENGTH, N_SYMBOLS, task, torch.Generator().manual_seed(123))
    weights = toy.cross_attention(model, src, tgt_in)[:, :, :LENGTH]  # (B, H, L, S)
    return (weights.argmax(-1) == expected_source(task)).float().mean(dim=(0, 2))


def specialise(task: str) -> StepResult:
    """Train on copy or reverse; one head's cross-attention becomes the permutation the task needs."""
    model, losses = trained(task)
    scores = pattern_scores(model, task)
    best = int(scores.argmax())
    src, tgt_in, labels = toy.reverse_batch(1, LENGTH, N_SYMBOLS, task, torch.Generator().manual_seed(7))
    weights = toy.cross_attention(model, src, tgt_in)[0]  # (H, T, S)
    names = toy.symbols(N_SYMBOLS)
    source = [names[i] for i in src[0].tolist()]
    target_in = [names[i] for i in tgt_in[0].tolist()]
    accuracy = float((model(src, tgt_in).argmax(-1) == labels).float().mean())
    expected = "t" if task == "copy" else f"{LENGTH - 1}-t"
    return StepResult(
        outcome=f"{task}: after {len(losses)} steps (loss {losses[-1]:.3f}) head {best} puts its peak on "
                f"source position {expected} for {float(scores[best]):.0%} of target positions",
        metrics={"best_head_pattern": float(scores[best]), "final_loss": losses[-1],
                 "example_accuracy": accuracy,
                 **{f"head{h}_pattern": float(s) for h, s in enumerate(scores)}},
        columns=("head", f"peak at source {expected}"), rows=[[h, float(s)] for h, s in enumerate(scores)],
        figures={"cross_attention": plot_attention(weights, target_in, source,
                                                   f"{task}: cross-attention after training"),
                 "loss": curves({task: losses}, "loss", f"training loss, {task}"),
                 "expected": heatmap(torch.nn.functional.one_hot(expected_source(task), LENGTH).float(),
                                     [f"t={t}" for t in range(LENGTH)], [f"s={s}" for s in range(LENGTH)],
                                     f"the pattern {task} needs", cmap="Greys")},
        curves={f"loss {task}": losses})


STEPS = [
    Step("splitting into heads", """
Multi-head attention runs h attentions side by side, each on its own C/h-wide slice of the
projected queries, keys and values, and concatenates them (Sec. 3.2.2). The projection matrices are
the same size for any h: splitting costs no parameters, it only lets different heads attend to
different places. Change the number of heads and watch the patterns and the unchanged count.""", split,
         Knob("n_heads", 4, "1, 2, 4, 8, 16 or 32 (must divide 32)", low=1, high=32)),
    Step("heads that specialise", """
A 1-layer encoder-decoder is trained for a few seconds to copy or to reverse a 6-symbol sequence.
To write target position t it must read one source position: t to copy, 5-t to reverse. The
cross-attention of a trained head becomes exactly that permutation: the diagonal for copy, the
anti-diagonal for reverse.""", specialise,
         Knob("task", "reverse", "copy or reverse", choices=("copy", "reverse"))),
]
