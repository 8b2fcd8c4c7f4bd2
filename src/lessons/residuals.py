"""Residuals and layer norm: post-norm against pre-norm gradient norms across depth, from a short training run.

Trains the project's encoder-decoder Transformer (``norm_first`` switches the LayerNorm placement,
``src/models/layers.py``) and reads the per-layer gradient norms with ``grouped_grad_norms``
(``src/training/monitor.py``), as the trainer logs them.
"""

import math

import torch

from src.lessons import toy
from src.lessons.plots import heatmap, line_plot
from src.lessons.step import Knob, Step, StepResult

TRAIN_STEPS, N_SYMBOLS, LENGTH = 30, 8, 6


def layer_gradient_norms(norm_first: bool, depth: int, seed: int = 0) -> tuple[list[str], torch.Tensor,
                                                                               list[float]]:
    """Per-layer gradient norms (before clipping) of every step of a short reverse-task run.

    Returns the layer names (encoder layers, then decoder layers, input to output), the norms
    (steps, layers) and the losses.
    """
    cfg = toy.tiny_config(n_encoder_layers=depth, n_decoder_layers=depth, norm_first=norm_first)
    model = toy.seq2seq_model(cfg, N_SYMBOLS, seed)
    log = toy.train(model, toy.seq2seq_loss("reverse", LENGTH, N_SYMBOLS), steps=TRAIN_STEPS, lr=1e-3,
                    seed=seed,
                    record_grad_norms=True, series=f"loss {'pre-norm' if norm_first else 'post-norm'}")
    names = [f"{side}.layers.{i}" for side in ("encoder", "decoder") for i in range(depth)]
    norms = torch.tensor([[step[name] for name in names] for step in log.grad_norms])
    return names, norms, log.losses


def spread(norms: torch.Tensor) -> float:
    """Largest over smallest mean gradient norm across the layers: 1 is perfectly flat."""
    mean = norms.mean(0)
    return float(mean.max() / mean.min())


def depth_profile(depth: int) -> StepResult:
    """Post-norm gradients grow toward the output layers; pre-norm keeps them level."""
    runs = {"post-norm": layer_gradient_norms(False, depth), "pre-norm": layer_gradient_norms(True, depth)}
    names = runs["post-norm"][0]
    spreads = {label: spread(norms) for label, (_, norms, _) in runs.items()}
    decoder = slice(depth, 2 * depth)
    decoder_spreads = {label: spread(norms[:, decoder]) for label, (_, norms, _) in runs.items()}
    means = {label: norms.mean(0) for label, (_, norms, _) in runs.items()}
    figures = {"by_layer": line_plot(list(range(len(names))), {k: v.tolist() for k, v in means.items()},
                                     "layer (encoder 0.., then decoder 0..)", "mean gradient norm",
                                     f"gradient norm by layer over {TRAIN_STEPS} steps", log_y=True)}
    for label, (_, norms, _) in runs.items():
        figures[f"heatmap_{label}"] = heatmap(norms.log10().T, names, [str(s) if s % 5 == 0 else "" for s in
                                                                     range(TRAIN_STEPS)],
                                              f"{label}: log10 gradient norm", xlabel="step", ylabel="layer")
    return StepResult(
        outcome=f"depth {depth}: largest/smallest layer gradient norm {spreads['post-norm']:.1f}x post-norm, "
                f"{spreads['pre-norm']:.1f}x pre-norm (decoder alone: {decoder_spreads['post-norm']:.1f}x vs "
                f"{decoder_spreads['pre-norm']:.1f}x)",
        metrics={"spread_post_norm": spreads["post-norm"], "spread_pre_norm": spreads["pre-norm"],
                 "decoder_spread_post_norm": decoder_spreads["post-norm"],
                 "decoder_spread_pre_norm": decoder_spreads["pre-norm"],
                 "log_spread_post_norm": math.log10(spreads["post-norm"]),
                 "log_spread_pre_norm": math.log10(spreads["pre-norm"])},
        columns=("layer", "post-norm", "pre-norm"),
        rows=[
            [name, float(means["post-norm"][i]),
             float(means["pre-norm"][i])] for i, name in enumerate(names)],
        figures=figures,
        curves={f"loss {label}": losses for label, (_, _, losses) in runs.items()})


STEPS = [
    Step("post-norm against pre-norm", """
Every sublayer sits in a residual connection. The paper normalises after the addition
(post-norm, x = LN(x + F(x))); most later models normalise the sublayer's input instead
(pre-norm, x = x + F(LN(x))). Xiong et al. 2020 showed that with post-norm the gradients near the
output are large and those of lower layers smaller, which is why post-norm needs a learning-rate
warm-up; with pre-norm the identity path carries the gradient unchanged to every layer. We train
both for a few steps and compare the per-layer gradient norms the trainer logs.""", depth_profile,
         Knob("depth", 6, "layers in the encoder and in the decoder", low=1, high=12)),
]
