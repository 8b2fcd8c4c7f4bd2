"""Encoder-only models: the encoder classifier's [CLS] token and pooling, on a toy task trained in seconds.

Builds ``EncoderClassifier`` (``src/models/encoder_classifier.py``) through ``src/models/builders.py``;
[CLS] is the BOS id in front of every text, as the data step puts it.
"""

from functools import lru_cache

import torch

from src.config.model import ModelConfig
from src.lessons import toy
from src.lessons.plots import curves, heatmap
from src.lessons.step import Knob, Step, StepResult
from src.models.builders import build
from src.training.loss import translation_loss

N_SYMBOLS, MAX_LEN, TRAIN_STEPS, MARKER = 8, 12, 150, toy.FIRST_SYMBOL  # the marker is symbol 'a'


def marker_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] + 4 to 11 symbols + padding; label 1 when the text holds the marker 'a', else 0 (half each).

    Shape: tokens (B, 1 + MAX_LEN - 1), labels (B,).
    """
    lengths = torch.randint(4, MAX_LEN, (batch,), generator=generator)
    symbols = torch.randint(MARKER + 1, toy.FIRST_SYMBOL + N_SYMBOLS, (batch, MAX_LEN - 1),
                            generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    where = (torch.rand(batch, generator=generator) * lengths).long()
    symbols[labels.bool(), where[labels.bool()]] = MARKER
    symbols[torch.arange(MAX_LEN - 1) >= lengths[:, None]] = toy.PAD
    return torch.cat([torch.full((batch, 1), toy.BOS), symbols], 1), labels


@lru_cache(maxsize=4)
def trained(pooling: str, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    cfg = ModelConfig(family="encoder_classifier", pooling=pooling, d_model=32, n_heads=2, n_encoder_layers=2,
                      d_ff=64, dropout=0.0, max_positions=MAX_LEN + 8, attention_backend="math")
    model = build(cfg, vocab_size=toy.FIRST_SYMBOL + N_SYMBOLS, n_classes=2, pad_id=toy.PAD)

    def loss_of_batch(m: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        tokens, labels = marker_batch(32, generator)
        return translation_loss(m(tokens)[:, None], labels[:, None], pad_id=-100)[0]  # (B, K) -> (B, 1, K)

    log = toy.train(model, loss_of_batch, steps=TRAIN_STEPS, lr=3e-3, seed=seed, warmup_steps=20,
                    series=f"loss {pooling}")
    return model, log.losses


def classify(pooling: str) -> StepResult:
    """Train with [CLS] or mean pooling; accuracy, padding invariance, and where [CLS] looks."""
    model, losses = trained(pooling)
    tokens, labels = marker_batch(256, torch.Generator().manual_seed(42))
    with torch.no_grad():
        logits, weights = model(tokens, return_attention=True)
        padded = torch.cat([tokens, torch.full((tokens.size(0), 5), toy.PAD)], 1)
        padding_change = float((model(padded) - logits).abs().max())
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    has_marker = labels.bool()
    others = (tokens != toy.PAD) & (tokens != MARKER) & has_marker[:, None]
    others[:, 0] = False  # [CLS] itself
    by_layer = []  # (weight of the [CLS] query on the marker, on another word) per layer, heads averaged
    for layer_weights in weights:
        cls_row = layer_weights[:, :, 0].mean(1)  # (B, H, T, S) -> query [CLS] -> (B, S)
        by_layer.append((float(cls_row[tokens == MARKER].mean()), float(cls_row[others].mean())))
    layer = max(range(len(by_layer)), key=lambda i: by_layer[i][0])
    on_marker, on_other = by_layer[layer]
    example = int(has_marker.nonzero()[0])
    names = toy.symbols(N_SYMBOLS)
    labels_text = [names[i] if i != toy.BOS else "[CLS]" for i in tokens[example].tolist()]
    return StepResult(
        outcome=f"{pooling} pooling: accuracy {accuracy:.0%} after {len(losses)} steps; 5 more pads change "
                f"the logits by {padding_change:.1e}; in layer {layer} the [CLS] query puts {on_marker:.2f} "
                f"on the marker 'a' against {on_other:.2f} on another word",
        metrics={"accuracy": accuracy, "padding_change": padding_change, "cls_weight_on_marker": on_marker,
                 "cls_weight_on_other": on_other},
        columns=("measure", "value"),
        rows=[["test accuracy", accuracy], ["max logit change with 5 more pads", padding_change],
              *[[f"layer {i}: [CLS] weight on the marker / another word", f"{m:.3f} / {o:.3f}"]
                for i, (m, o) in enumerate(by_layer)]],
        figures={"cls_attention": heatmap(weights[layer][example].mean(0), labels_text, labels_text,
                                          f"layer {layer}, heads averaged (row 0: [CLS])"),
                 "loss": curves({pooling: losses}, "loss", f"training loss, {pooling} pooling")},
        curves={f"loss {pooling}": losses})


STEPS = [
    Step("[CLS] and pooling", """
An encoder-only model (BERT) reads the whole text at once, with no causal mask. To classify, one
vector must sum the text up: BERT puts a [CLS] token in front and uses its final state; mean
pooling averages the real tokens' states instead. The task: does the text contain the word 'a'?
Padding is masked in every layer and in the mean, so extra padding changes nothing, and the
[CLS] query of one layer learns to look at the word that decides the class.""", classify,
         Knob("pooling", "cls", "cls or mean", choices=("cls", "mean"))),
]
