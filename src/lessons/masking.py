"""Masking: padding and causal masks, and what goes wrong without them (future-token leakage).

Uses ``padding_mask`` and ``causal_mask`` (``src/components/masks.py``: True = may attend), the real
``EncoderLayer`` and its stack (``build_encoder``), trained with the trainer's loss and schedule.
"""

from functools import lru_cache

import torch
from torch import Tensor, nn

from src.components.masks import causal_mask, padding_mask
from src.components.positional_encoding import SinusoidalPositionalEncoding
from src.lessons import toy
from src.lessons.plots import curves, heatmap
from src.lessons.step import Knob, Step, StepResult
from src.models.layers import EncoderLayer
from src.models.transformer import build_encoder

LENGTH, N_SYMBOLS, TRAIN_STEPS = 16, 8, 150


def _layer() -> EncoderLayer:
    torch.manual_seed(0)
    return EncoderLayer(32, 4, 64, 0.0, 0.0, "relu", False, 1e-5, "math").eval()


def padding(n_pad: int) -> StepResult:
    """Append padding: with the padding mask the real tokens' outputs do not move; without it they do."""
    layer = _layer()
    generator = torch.Generator().manual_seed(1)
    embed = nn.Embedding(toy.FIRST_SYMBOL + N_SYMBOLS, 32)
    tokens = torch.randint(toy.FIRST_SYMBOL, toy.FIRST_SYMBOL + N_SYMBOLS, (1, 6), generator=generator)
    padded = torch.cat([tokens, torch.full((1, n_pad), toy.PAD)], 1)
    with torch.no_grad():
        alone = layer(embed(tokens), padding_mask(tokens, toy.PAD))[0]
        masked = layer(embed(padded), padding_mask(padded, toy.PAD))[0][:, :6]
        unmasked = layer(embed(padded), None)[0][:, :6]
    with_mask, without_mask = float((masked - alone).abs().max()), float((unmasked - alone).abs().max())
    mask = padding_mask(padded, toy.PAD)[0, 0].expand(padded.size(1), -1)  # (1, 1, 1, S) -> (T, S)
    names = toy.symbols(N_SYMBOLS)
    labels = [names[i] for i in padded[0].tolist()]
    return StepResult(
        outcome=f"{n_pad} pads appended: real tokens' outputs change by {with_mask:.1e} with the padding "
                f"mask, by {without_mask:.3f} without it",
        metrics={"change_with_mask": with_mask, "change_without_mask": without_mask},
        columns=("padding mask", "max change of the real tokens' outputs"),
        rows=[["on", with_mask], ["off", without_mask]],
        figures={"padding_mask": heatmap(mask.float(), labels, labels, "padding mask (1 = may attend)",
                                         cmap="Greys")})


def causal(position: int) -> StepResult:
    """Change the token at ``position``: under the causal mask only outputs at and after it move."""
    layer = _layer()
    x = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
    changed = x.clone()
    changed[:, position] += 1.0
    mask = causal_mask(8, 8)
    with torch.no_grad():
        before_causal, after_causal = layer(x, mask)[0], layer(changed, mask)[0]
        before_full, after_full = layer(x, None)[0], layer(changed, None)[0]
    moved_causal = (after_causal - before_causal).abs().amax(-1)[0]  # (T,)
    moved_full = (after_full - before_full).abs().amax(-1)[0]
    earlier = slice(0, position)
    past_causal = float(moved_causal[earlier].max()) if position else 0.0
    past_full = float(moved_full[earlier].max()) if position else 0.0
    return StepResult(
        outcome=f"token {position} changed: outputs before it move by {past_causal:.1e} with the causal "
                f"mask, by {past_full:.3f} without it",
        metrics={"past_change_causal": past_causal, "past_change_full": past_full},
        columns=("output position", "change (causal)", "change (no mask)"),
        rows=[[t, float(moved_causal[t]), float(moved_full[t])] for t in range(8)],
        figures={"causal_mask": heatmap(mask.float(), list(map(str, range(8))), list(map(str, range(8))),
                                        "causal mask (1 = may attend)", cmap="Greys")})


class EncoderStackLM(nn.Module):
    """Token embedding, sinusoids, a pre-norm ``Encoder`` stack and a linear head: a language model
    whose self-attention mask is a switch. With the causal mask it is a decoder-only LM (GPT's
    blocks are these layers with the mask built in); without it, every position sees the future.

    Args:
        vocab_size: tokens V.
        causal: apply ``causal_mask`` in every layer.
    """

    def __init__(self, vocab_size: int, causal: bool) -> None:
        super().__init__()
        cfg = toy.tiny_config(n_encoder_layers=2, norm_first=True, max_positions=LENGTH)
        self.embedding = nn.Embedding(vocab_size, cfg.d_model)
        self.positional = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_positions)
        self.encoder = build_encoder(cfg)
        self.head = nn.Linear(cfg.d_model, vocab_size)
        self.causal = causal

    def forward(self, tokens: Tensor) -> Tensor:
        """Shape: tokens (B, T) -> logits (B, T, V)."""
        mask = causal_mask(tokens.size(1), tokens.size(1), tokens.device) if self.causal else None
        hidden, _ = self.encoder(self.positional(self.embedding(tokens)), mask)
        return self.head(hidden)


@lru_cache(maxsize=4)
def trained_lm(causal: bool, seed: int = 0) -> tuple[EncoderStackLM, list[float]]:
    torch.manual_seed(seed)
    model = EncoderStackLM(toy.FIRST_SYMBOL + N_SYMBOLS, causal)
    log = toy.train(model, toy.lm_loss("walk", LENGTH, N_SYMBOLS), steps=TRAIN_STEPS, lr=1e-2, seed=seed,
                    warmup_steps=20, series="causal mask" if causal else "no mask")
    return model, log.losses


@torch.no_grad()
def walk_validity(model: EncoderStackLM, n_new: int = 8) -> float:
    """Greedy continuation of 4-token prompts: the share of new tokens that follow the rule (+1 or +2)."""
    prompts = toy.lm_batch("walk", 32, 4, N_SYMBOLS, torch.Generator().manual_seed(99))
    tokens = prompts
    for _ in range(n_new):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], 1)
    steps = (tokens[:, 3:].diff(dim=1)) % N_SYMBOLS  # (B, n_new)
    return float(((steps == 1) | (steps == 2)).float().mean())


def leakage(mask: bool) -> StepResult:
    """Train the same LM with and without the causal mask: the unmasked one copies the next token."""
    runs = {name: trained_lm(on) for name, on in (("causal mask", True), ("no mask", False))}
    validity = {name: walk_validity(model) for name, (model, _) in runs.items()}
    final = {name: sum(losses[-10:]) / 10 for name, (_, losses) in runs.items()}
    shown = "causal mask" if mask else "no mask"
    other = "no mask" if mask else "causal mask"
    return StepResult(
        outcome=f"{shown}: training loss {final[shown]:.3f} (vs {final[other]:.3f} {other}; the data's own "
                f"floor is ln 2 = 0.693), generation follows the rule {validity[shown]:.0%} of the time "
                f"(vs {validity[other]:.0%})",
        metrics={"loss_causal": final["causal mask"], "loss_no_mask": final["no mask"],
                 "generation_valid_causal": validity["causal mask"],
                 "generation_valid_no_mask": validity["no mask"]},
        columns=("training", "final training loss", "greedy generation follows the rule"),
        rows=[[name, final[name], validity[name]] for name in runs],
        figures={"loss": curves({name: losses for name, (_, losses) in runs.items()}, "training loss",
                                "next-token loss with and without the causal mask")},
        curves={name: losses for name, (_, losses) in runs.items()})


STEPS = [
    Step("padding mask", """
Sentences in a batch are padded to one length. A padding mask (True = may attend) hides the pad
keys from every query, so a sentence's outputs do not depend on how much padding its batch
needed. Without it the pads take part in every softmax.""", padding,
         Knob("n_pad", 4, "how many pad tokens to append", low=0, high=32)),
    Step("causal mask", """
A decoder predicts token t+1 from tokens up to t. The causal mask (Sec. 3.2.3) lets position t
attend only to positions <= t, so changing a later token cannot change an earlier output.
Without it information flows backwards from the future.""", causal,
         Knob("position", 4, "which token to change, 0-7", low=0, high=7)),
    Step("future-token leakage", """
Train the same small language model on sequences that step +1 or +2 at random, once with the
causal mask and once without. Without it the model can read the very token it is asked to
predict: its training loss falls far below what the data allows (ln 2), but at generation time
there is no future token to read, and its continuations break the rule.""", leakage,
         Knob("mask", True, "on: show the masked run first; off: the unmasked one")),
]
