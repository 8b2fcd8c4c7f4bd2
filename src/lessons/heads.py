"""Attention-head analysis: per-head entropy, previous-token heads in a tiny LM, alignment heads, rare-word heads.

Trains the project's decoder-only LM (``src/models/decoder_lm.py``) and reuses the encoder-decoder
of the multi-head lesson and an encoder classifier (``src/models/encoder_classifier.py``) on Zipf-distributed
text; the weights come from the models' own ``return_attention``.
"""

from functools import lru_cache

import torch

from src.config.model import ModelConfig
from src.lessons import toy
from src.lessons.attention import entropy
from src.lessons.multi_head import N_SYMBOLS as SEQ2SEQ_SYMBOLS
from src.lessons.multi_head import pattern_scores, trained
from src.lessons.plots import heatmap
from src.lessons.step import Knob, Step, StepResult
from src.models.builders import build
from src.training.loss import translation_loss
from src.visualization.attention import plot_attention

LENGTH, N_SYMBOLS, TRAIN_STEPS = 16, 10, 200


@lru_cache(maxsize=4)
def trained_lm(n_heads: int, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """A 2-layer LM trained on the "skip" pattern (a, b, a+1, b+1, ...): the next token is the one
    before the current one, plus 1."""
    model = toy.lm_model(toy.lm_config(n_heads=n_heads), N_SYMBOLS, seed)
    log = toy.train(model, toy.lm_loss("skip", LENGTH, N_SYMBOLS), steps=TRAIN_STEPS, lr=1e-2, seed=seed,
                    warmup_steps=20, series="loss")
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
    untrained = toy.lm_model(toy.lm_config(n_heads=n_heads), N_SYMBOLS, 0)  # the same seed, no training
    with torch.no_grad():
        before = float(head_statistics(untrained(tokens[:, :-1], return_attention=True)[1])[layer, head, 1])
    other_layers = float(torch.cat([stats[:layer, :, 1], stats[layer + 1:, :, 1]]).max())
    uniform = float(sum(1 / (t + 1) for t in range(1, LENGTH - 1)) / (LENGTH - 2))  # causal uniform share
    names = toy.symbols(N_SYMBOLS)
    labels = [names[i] for i in tokens[0, :-1].tolist()]
    rows = [[f"layer {li} head {h}", float(stats[li, h, 0]), float(stats[li, h, 1])]
            for li in range(stats.size(0)) for h in range(n_heads)]
    return StepResult(
        outcome=f"{n_heads} heads: layer {layer} head {head} puts {best:.0%} of its weight on the previous "
                f"token (the same head before training: {before:.0%}; a uniform causal head: {uniform:.0%}; "
                f"at most {other_layers:.0%} in the other layer); next-token accuracy {accuracy:.0%} after "
                f"{len(losses)} steps",
        metrics={"best_previous_token_weight": best, "uniform_previous_token_weight": uniform,
                 "untrained_same_head_weight": before, "other_layer_max_weight": other_layers,
                 "next_token_accuracy": accuracy, "best_head_entropy": float(stats[layer, head, 0])},
        columns=("head", "mean entropy (nats)", "weight on previous token"), rows=rows,
        figures={"heads": plot_attention(torch.stack([w[0] for w in weights]), labels, labels,
                                         "decoder-only LM on a, b, a+1, b+1, ...", label_every_head=False),
                 "statistics": heatmap(stats[..., 1], [f"layer {i}" for i in range(stats.size(0))],
                                       [f"head {h}" for h in range(n_heads)], "weight on the previous token",
                                       xlabel="head", ylabel="layer")},
        curves={"loss": losses})


def alignment(task: str) -> StepResult:
    """Cross-attention heads of the trained toy translator: entropy and how often each reads the aligned
    source."""
    model, _ = trained(task)
    scores = pattern_scores(model, task)
    src, tgt_in, _ = toy.reverse_batch(64, 6, SEQ2SEQ_SYMBOLS, task, torch.Generator().manual_seed(123))
    with torch.no_grad():
        _, attention = model(src, tgt_in, return_attention=True)
    cross = attention["cross"][-1][:, :, :6]  # (B, H, T, S), the symbol positions
    head_entropy = entropy(cross).mean(dim=(0, 2))
    best = int(scores.argmax())
    return StepResult(
        outcome=f"{task}: head {best} reads the aligned source word {float(scores[best]):.0%} of the time "
                f"with entropy {float(head_entropy[best]):.2f} nats (uniform over 6 words: 1.79)",
        metrics={"best_alignment": float(scores[best]), "best_alignment_entropy": float(head_entropy[best])},
        columns=("head", "reads the aligned word", "mean entropy (nats)"),
        rows=[[h, float(scores[h]), float(head_entropy[h])] for h in range(scores.numel())],
        figures={"alignment": heatmap(cross[:, best].mean(0), [f"t={t}" for t in range(6)],
                                      [f"s={s}" for s in range(6)],
                                      f"head {best}: mean cross-attention over 64 sentences",
                                      xlabel="source position", ylabel="target position")})


RARE_WORDS, RARE_LENGTH, RARE_STEPS = 16, 8, 80
# word r (0 = most frequent) has p ~ 1 / (r + 1)
ZIPF = 1 / torch.arange(1, RARE_WORDS + 1, dtype=torch.float)


def zipf_batch(batch: int, n_rare: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                             torch.Tensor]:
    """[CLS] + ``RARE_LENGTH`` words drawn from a Zipf law; label 1 when the text holds one of the
    ``n_rare`` rarest words.

    Shape: tokens (B, 1 + RARE_LENGTH); labels (B,); rare (B, 1 + RARE_LENGTH), True at rare words.
    """
    words = torch.multinomial(ZIPF / ZIPF.sum(), batch * RARE_LENGTH, replacement=True, generator=generator)
    words = words.view(batch, RARE_LENGTH)  # (B*L,) -> (B, L)
    rare = torch.cat([torch.zeros(batch, 1, dtype=torch.bool), words >= RARE_WORDS - n_rare], 1)
    tokens = torch.cat([torch.full((batch, 1), toy.BOS), words + toy.FIRST_SYMBOL], 1)
    return tokens, rare.any(1).long(), rare


def rare_word_classifier(seed: int = 0) -> torch.nn.Module:
    """A 2-layer encoder classifier (``src/models/encoder_classifier.py``) reading [CLS], untrained."""
    torch.manual_seed(seed)
    cfg = ModelConfig(family="encoder_classifier", pooling="cls", d_model=32, n_heads=2, n_encoder_layers=2,
                      d_ff=64, dropout=0.0, max_positions=RARE_LENGTH + 8, attention_backend="math")
    return build(cfg, vocab_size=toy.FIRST_SYMBOL + RARE_WORDS, n_classes=2, pad_id=toy.PAD)


@lru_cache(maxsize=4)
def trained_rare(n_rare: int, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    model = rare_word_classifier(seed)

    def loss_of_batch(m: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        tokens, labels, _ = zipf_batch(32, n_rare, generator)
        return translation_loss(m(tokens)[:, None], labels[:, None], pad_id=-100)[0]  # (B, K) -> (B, 1, K)

    log = toy.train(model, loss_of_batch, steps=RARE_STEPS, lr=3e-3, seed=seed, warmup_steps=20,
                    series=f"loss rare words {n_rare}")
    return model, log.losses


def rare_mass(model: torch.nn.Module, tokens: torch.Tensor, rare: torch.Tensor) -> tuple[torch.Tensor,
                                                                                         torch.Tensor]:
    """(accuracy logits, weight of the [CLS] query on the rare words per layer and head).

    Shape: tokens, rare (B, S) -> logits (B, 2), mass (L, H), averaged over the texts holding a rare word.
    """
    with torch.no_grad():
        logits, weights = model(tokens, return_attention=True)
    has = rare.any(1)
    mass = torch.stack([(layer[:, :, 0] * rare[:, None]).sum(-1)[has].mean(0) for layer in weights])  # (L, H)
    return logits, mass


def rare_words(n_rare: int) -> StepResult:
    """Heads of a classifier whose label rare words decide: weight on them against their share of the text."""
    model, losses = trained_rare(n_rare)
    tokens, labels, rare = zipf_batch(512, n_rare, torch.Generator().manual_seed(7))
    logits, mass = rare_mass(model, tokens, rare)
    _, before = rare_mass(rare_word_classifier(0), tokens, rare)  # the same seed, no training
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    share = float(rare[rare.any(1)].float().mean())  # rare words among the positions of texts that hold one
    layer, head = divmod(int(mass.argmax()), mass.size(1))
    best, untrained = float(mass[layer, head]), float(before[layer, head])
    frequency = float(ZIPF[-n_rare:].sum() / ZIPF.sum())
    return StepResult(
        outcome=f"the {n_rare} rarest of {RARE_WORDS} words ({frequency:.1%} of the corpus): the [CLS] query "
                f"of layer {layer} head {head} puts {best:.0%} of its weight on them, where they are "
                f"{share:.0%} of the positions (before training: {untrained:.0%}); accuracy {accuracy:.0%} "
                f"after {len(losses)} steps",
        metrics={"best_rare_weight": best, "untrained_rare_weight": untrained, "rare_share": share,
                 "rare_accuracy": accuracy, "rare_frequency": frequency},
        columns=("head", "[CLS] weight on rare words, trained", "untrained"),
        rows=[[f"layer {li} head {h}", float(mass[li, h]), float(before[li, h])]
              for li in range(mass.size(0)) for h in range(mass.size(1))],
        figures={"rare_weight": heatmap(mass, [f"layer {i}" for i in range(mass.size(0))],
                                        [f"head {h}" for h in range(mass.size(1))],
                                        f"[CLS] weight on the {n_rare} rarest words (share {share:.0%})",
                                        xlabel="head", ylabel="layer")},
        curves={f"loss rare words {n_rare}": losses})


STEPS = [
    Step("previous-token heads", """
Different heads learn different jobs. A 2-layer language model is trained for a few seconds on
sequences a, b, a+1, b+1, a+2, ...: to predict the next token, position t must read the token at
t-1. We measure each head's entropy (how spread its attention is) and the weight it puts on the
previous token: first-layer heads become previous-token heads, while the second layer looks
elsewhere.""", previous_token,
         Knob("n_heads", 2, "heads per layer: 1, 2, 4, 8", low=1, high=32)),
    Step("alignment heads", """
In translation a cross-attention head often aligns each target word with its source word. In the
toy reverse task the alignment is known exactly (target t reads source 5-t), so we can score each
head by how often its peak is on the aligned word.""", alignment, Knob("task", "reverse", "copy or reverse",
                                                                       choices=("copy", "reverse"))),
    Step("rare-word heads", """
In trained translation models some heads attend mostly to the rarest tokens of a sentence (the "rare
words" heads of Voita et al. 2019): rare words carry much of the meaning. To see one emerge in seconds we make
that true by construction: texts of 8 words drawn from a Zipf law over 16 words, labelled by
whether they hold one of the rarest words. We compare each head's weight on the rare words with
their share of the positions, and with the same head before training.""", rare_words,
         Knob("n_rare", 4, "how many of the rarest words decide the label, 1-8", low=1, high=8)),
]
