"""Decoder-only models: a causal language model, its key/value cache, and sampling temperature.

Uses the project's ``DecoderLM`` (``src/models/decoder_lm.py``) trained in seconds on a toy
pattern, and ``generate`` from ``src/models/sampling.py`` for cached and uncached decoding and sampling.
"""

import torch

from src.lessons import toy
from src.lessons.heads import LENGTH, N_SYMBOLS, trained_lm
from src.lessons.plots import line_plot
from src.lessons.step import Knob, Step, StepResult
from src.models.sampling import generate

TEMPERATURES = (0.0, 0.5, 1.0, 2.0)


def causality(position: int) -> StepResult:
    """Changing token ``position`` leaves every earlier logit unchanged; cached and uncached decoding
    agree."""
    model, _ = trained_lm(2)
    tokens = toy.lm_batch("skip", 4, LENGTH, N_SYMBOLS, torch.Generator().manual_seed(5))
    changed = tokens.clone()
    changed[:, position] = toy.FIRST_SYMBOL + (changed[:, position] - toy.FIRST_SYMBOL + 3) % N_SYMBOLS
    with torch.no_grad():
        moved = (model(changed) - model(tokens)).abs().amax(dim=(0, 2))  # (T,)
    past = float(moved[:position].max()) if position else 0.0
    prompt = tokens[:, :4]
    cached = generate(model, prompt, 10, temperature=0.0, use_cache=True)
    uncached = generate(model, prompt, 10, temperature=0.0, use_cache=False)
    names = toy.symbols(N_SYMBOLS)
    return StepResult(
        outcome=f"token {position} changed: logits before it move by {past:.1e}, at it by "
                f"{float(moved[position]):.2f}; cached and uncached greedy generation "
                f"{'agree' if torch.equal(cached, uncached) else 'differ'} on {cached.size(0)} prompts",
        metrics={"past_logit_change": past, "changed_position_logit_change": float(moved[position]),
                 "cache_agrees": float(torch.equal(cached, uncached))},
        columns=("position", "max logit change"), rows=[[t, float(moved[t])] for t in range(LENGTH)],
        figures={"causality": line_plot(list(range(LENGTH)), {"max logit change": moved.tolist()}, "position",
                                        "max |logit change|", f"logits after changing token {position}")},
        extra=[(f"prompt {' '.join(names[i] for i in prompt[0].tolist())} -> "
                f"{' '.join(names[i] for i in cached[0, 4:].tolist())}")])


def follows_rule(tokens: torch.Tensor) -> torch.Tensor:
    """Whether each generated token (from the third on) is the one two places back plus 1. Shape: (B, T-2)."""
    symbols = tokens - toy.FIRST_SYMBOL
    return (symbols[:, 2:] - symbols[:, :-2]) % N_SYMBOLS == 1


def temperature(t: float) -> StepResult:
    """Sampling at several temperatures: the share of generated tokens that follow the pattern."""
    model, _ = trained_lm(2)
    prompts = toy.lm_batch("skip", 64, 4, N_SYMBOLS, torch.Generator().manual_seed(6))
    rows = []
    for temp in sorted({*TEMPERATURES, t}):
        out = generate(model, prompts, 12, temperature=temp, generator=torch.Generator().manual_seed(0))
        rows.append([temp, float(follows_rule(out)[:, 2:].float().mean())])
    chosen = dict(rows)[t]
    names = toy.symbols(N_SYMBOLS)
    sample = generate(model, prompts[:1], 12, temperature=t, generator=torch.Generator().manual_seed(1))
    return StepResult(
        outcome=f"temperature {t:g}: {chosen:.0%} of sampled tokens follow the pattern "
                f"(greedy: {rows[0][1]:.0%}); e.g. {' '.join(names[i] for i in sample[0].tolist())}",
        metrics={"rule_share": chosen, "rule_share_greedy": rows[0][1],
                 **{f"rule_share_t{temp:g}": share for temp, share in rows}},
        columns=("temperature", "tokens following the pattern"), rows=rows,
        figures={"temperature": line_plot([r[0] for r in rows], {"follows the pattern": [r[1] for r in rows]},
                                          "temperature", "share", "sampling temperature")})


STEPS = [
    Step("a causal language model", """
A decoder-only model (GPT) is one stack of causal self-attention blocks predicting each next token.
Because position t sees only positions <= t, the logits of earlier positions cannot depend on a later
token, and generation can keep each past token's keys and values in a cache instead of recomputing
them: both give the same tokens.""", causality, Knob("position", 8, f"which token to change, 1-{LENGTH - 1}",
                                                     low=1, high=LENGTH - 1)),
    Step("sampling temperature", """
Generation draws each token from softmax(logits / T). T = 0 is greedy (the argmax); T = 1 samples
the model's own distribution; larger T flattens it, so unlikely tokens appear and the pattern the
model learnt (a, b, a+1, b+1, ...) breaks more often.""", temperature,
         Knob("temperature", 1.0, "0 = greedy, e.g. 3 for chaos", low=0.0, high=100.0)),
]
