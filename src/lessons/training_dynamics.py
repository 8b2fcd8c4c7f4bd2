"""Training dynamics: learning-rate warm-up and label smoothing, watched on the loss curves.

Trains the project's encoder-decoder Transformer on the reverse task with the trainer's pieces:
``make_schedule`` (linear warm-up, then cosine decay), Adam with the paper's betas, gradient
clipping, and ``translation_loss`` with label smoothing (``src/training``).
"""

import math

import torch

from src.lessons import toy
from src.lessons.plots import curves, line_plot
from src.lessons.step import Knob, Step, StepResult

N_SYMBOLS, LENGTH, TRAIN_STEPS, WARMUP = 8, 6, 150, 50


def _run(series: str, lr: float, warmup: int, label_smoothing: float = 0.0, layers: int = 2,
         steps: int = TRAIN_STEPS) -> tuple[torch.nn.Module, toy.TrainLog]:
    """Train a fresh model; its losses go live to the tracker as the curve ``series``."""
    model = toy.seq2seq_model(toy.tiny_config(n_encoder_layers=layers, n_decoder_layers=layers), N_SYMBOLS, 0)
    log = toy.train(model, toy.seq2seq_loss("reverse", LENGTH, N_SYMBOLS, label_smoothing=label_smoothing),
                    steps=steps, lr=lr, seed=0, warmup_steps=warmup, series=series)
    return model, log


def warmup(lr: float) -> StepResult:
    """The same post-norm model at the same peak rate, with and without a linear warm-up."""
    schedules = {"no warm-up": 0, f"warm-up {WARMUP} steps": WARMUP}
    runs = {name: _run(f"loss {name}", lr, steps)[1] for name, steps in schedules.items()}
    final = {name: log.final_loss() for name, log in runs.items()}
    names = list(runs)
    return StepResult(
        outcome=f"peak lr {lr:g}: final training loss {final[names[0]]:.3f} without warm-up, "
                f"{final[names[1]]:.3f} with a {WARMUP}-step warm-up",
        metrics={"loss_no_warmup": final[names[0]], "loss_warmup": final[names[1]]},
        columns=("schedule", "final loss (mean of last 10 steps)", "lr at step 10"),
        rows=[[name, final[name], log.learning_rates[10]] for name, log in runs.items()],
        figures={"loss": curves({n: log.losses for n, log in runs.items()}, "training loss",
                                f"warm-up at peak lr {lr:g}", log_y=True),
                 "learning_rate": curves({n: log.learning_rates for n, log in runs.items()}, "learning rate",
                                         "schedules")},
        curves={f"loss {n}": log.losses for n, log in runs.items()})


@torch.no_grad()
def confidence(model: torch.nn.Module) -> float:
    """Mean probability of the predicted token on 64 fresh sentences."""
    src, tgt_in, _ = toy.reverse_batch(64, LENGTH, N_SYMBOLS, "reverse", torch.Generator().manual_seed(5))
    return float(model(src, tgt_in).softmax(-1).amax(-1).mean())


def label_smoothing(epsilon: float) -> StepResult:
    """Smoothing the targets raises the training loss floor and lowers the model's confidence."""
    runs = {
        eps: _run(f"loss epsilon {eps:g}", 5e-3, 20, eps, layers=1, steps=100) for eps in sorted(
            {0.0, epsilon})}
    rows, metrics = [], {}
    vocab = toy.FIRST_SYMBOL + N_SYMBOLS
    for eps, (model, log) in runs.items():
        # the smoothed loss cannot go below the entropy of the smoothed target distribution
        floor = 0.0 if eps == 0 else -(1 - eps + eps / vocab) * math.log(1 - eps + eps / vocab) - (
            vocab - 1) * (eps / vocab) * math.log(eps / vocab)
        rows.append([eps, log.final_loss(), floor, confidence(model)])
        metrics.update({f"loss_eps_{eps:g}": log.final_loss(), f"confidence_eps_{eps:g}": confidence(model),
                        f"floor_eps_{eps:g}": floor})
    return StepResult(
        outcome="; ".join(f"epsilon {r[0]:g}: final loss {r[1]:.3f} (floor {r[2]:.3f}), mean confidence "
                          f"{r[3]:.3f}"
                          for r in rows),
        metrics=metrics,
        columns=("epsilon", "final training loss", "loss floor", "mean max probability"), rows=rows,
        figures={"loss": curves({f"epsilon {eps:g}": log.losses for eps, (_, log) in runs.items()},
                                "training loss", "label smoothing", log_y=True),
                 "confidence": line_plot([r[0] for r in rows], {"mean max probability": [r[3] for r in rows]},
                                         "epsilon", "confidence", "confidence against smoothing")},
        curves={f"loss epsilon {eps:g}": log.losses for eps, (_, log) in runs.items()})


STEPS = [
    Step("learning-rate warm-up", """
The paper raises the learning rate linearly over the first steps before decaying it (Sec. 5.3).
At the start Adam's second-moment estimates are noisy and a post-norm Transformer's gradients are
largest near the output, so a full-size step right away can throw the model into a region it
does not recover from. We train the same 2-layer post-norm model at a high peak rate, once
starting at the peak and once with a warm-up; both then decay on the same cosine.""", warmup,
         Knob("lr", 2e-2, "peak learning rate, e.g. 1e-3 (gentle) or 2e-2 (hot)", low=1e-6, high=1.0)),
    Step("label smoothing", """
Label smoothing (Sec. 5.4, epsilon = 0.1) trains against a target that puts 1 - epsilon on the
right token and spreads epsilon over the vocabulary. The loss can then never reach zero: its floor
is the entropy of that smoothed target. The model learns to be less sure of itself, which hurts
perplexity but helps BLEU in the paper.""", label_smoothing,
         Knob("epsilon", 0.1, "smoothing in [0, 0.9]", low=0.0, high=0.9)),
]
