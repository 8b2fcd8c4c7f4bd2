"""Pretraining: masked-word guesses before and after masked-LM pretraining; a classifier with and without it.


A toy review language stands in for IMDB so that the lesson runs in about a minute on 2 cores: each
sentence is about one sentiment, and mixes that sentiment's words (``great``, ``dull``, ...) with neutral
words (``the``, ``plot``, ...). The unlabelled text uses every word; the few labelled sentences only use
``good``/``great`` and ``bad``/``awful``; the test sentences only the sentiment words no label ever showed.
What the classifier needs to know about ``superb`` or ``dreadful`` is only in the unlabelled text.

Uses the masked-LM task's masking (``mask_tokens``: 15% of the words, 80/10/10, drawn afresh for every
batch; ``src/tasks/masked_lm/task.py``), ``EncoderMaskedLM`` (``src/models/masked_lm.py``), and
``model.init_from``'s tensor-by-tensor loading (``load_matching``, ``src/training/init_from.py``).
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.config.model import ModelConfig
from src.data.special_tokens import CLS_ID, PAD_ID
from src.lessons import toy
from src.lessons.plots import curves, heatmap
from src.lessons.step import Knob, Step, StepResult
from src.models.builders import build
from src.tasks.masked_lm.task import FIRST_ORDINARY_ID, IGNORE, mask_tokens
from src.training.init_from import load_matching

POSITIVE = ("good", "great", "superb", "lovely", "brilliant", "wonderful", "excellent", "moving")
NEGATIVE = ("bad", "awful", "dull", "poor", "boring", "terrible", "weak", "dreadful")
NEUTRAL = ("the", "a", "film", "plot", "it", "was", "and", "acting")
WORDS = POSITIVE + NEGATIVE + NEUTRAL  # ids FIRST_ORDINARY_ID, ...; [MASK] is the last id, as the task's
MASK_ID = FIRST_ORDINARY_ID + len(WORDS)
VOCAB = MASK_ID + 1
LENGTH, SENTIMENT_SHARE = 10, 0.6  # words per sentence; the chance that a word carries the sentiment
SEEN = 2  # the labelled sentences use the first SEEN words of each sentiment; the test sentences the others


@dataclass(frozen=True)
class Size:
    """How much the lesson trains: the full lesson, or the reduced one its test runs."""

    d_model: int
    pretrain_steps: int
    finetune_steps: int
    test_sentences: int


FULL = Size(d_model=64, pretrain_steps=1000, finetune_steps=200, test_sentences=1000)
SMALL = Size(d_model=32, pretrain_steps=150, finetune_steps=60, test_sentences=256)


def word_id(word: str) -> int:
    return FIRST_ORDINARY_ID + WORDS.index(word)


def sentences(n: int, generator: torch.Generator, sentiment_words: int | slice = slice(None)) -> tuple[Tensor,
                                                                                                    Tensor]:
    """``n`` sentences of ``[CLS]`` + ``LENGTH`` words and their sentiment (1 positive, 0 negative); each word
    is one of the sentence's sentiment words (``sentiment_words`` of its list) with probability
    ``SENTIMENT_SHARE``, else a neutral word, and the first word always carries the sentiment.

    Shape: tokens (n, 1 + LENGTH), labels (n,).
    """
    chosen = slice(sentiment_words) if isinstance(sentiment_words, int) else sentiment_words
    groups = [torch.tensor([word_id(w) for w in words[chosen]]) for words in (NEGATIVE, POSITIVE)]
    neutral = torch.tensor([word_id(w) for w in NEUTRAL])
    labels = torch.randint(0, 2, (n,), generator=generator)
    carries = torch.rand(n, LENGTH, generator=generator) < SENTIMENT_SHARE
    carries[:, 0] = True
    tokens = neutral[torch.randint(0, len(neutral), (n, LENGTH), generator=generator)]
    for label, group in enumerate(groups):
        rows = carries & (labels == label)[:, None]
        tokens[rows] = group[torch.randint(0, len(group), (int(rows.sum()),), generator=generator)]
    return torch.cat([torch.full((n, 1), CLS_ID), tokens], 1), labels


def config(family: str, size: Size) -> ModelConfig:
    """The 2-layer BERT-like encoder both models share (the masked LM's head, or the classifier's)."""
    return ModelConfig(family=family, d_model=size.d_model, n_heads=4, n_encoder_layers=2,
                       d_ff=2 * size.d_model, dropout=0.0, max_positions=LENGTH + 1, pooling="mean",
                       positional_encoding="learned", activation="gelu", attention_backend="math")


def masked_lm_loss(model: nn.Module, generator: torch.Generator, batch: int = 64) -> Tensor:
    """The masked-LM loss of fresh unlabelled sentences, masked afresh (the task's 80/10/10 rule)."""
    tokens, _ = sentences(batch, generator)
    inputs, labels = mask_tokens(tokens, MASK_ID, generator)
    chosen = labels != IGNORE
    return F.cross_entropy(model(inputs, select=chosen), labels[chosen])


@lru_cache(maxsize=4)
def pretrained(steps: int, size: Size, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """The masked LM after ``steps`` pretraining steps (0: as initialised), and its loss curve."""
    torch.manual_seed(seed)
    model = build(config("encoder_mlm", size), vocab_size=VOCAB, pad_id=PAD_ID)
    if steps == 0:
        return model.eval(), []
    log = toy.train(model, masked_lm_loss, steps=steps, lr=2e-3, seed=seed, warmup_steps=steps // 10,
                    series=f"masked-LM loss ({steps} steps)")
    return model, log.losses


# --- 1. masked predictions --------------------------------------------------------------------------
def frequency_guess_loss() -> float:
    """The masked-LM loss of the best guess that ignores the context: the words' frequencies (nats).

    A masked position is one of the ``LENGTH`` words at random; the first always carries a sentiment,
    the others with probability ``SENTIMENT_SHARE``; both sentiments are equally likely.
    """
    share = (1 + (LENGTH - 1) * SENTIMENT_SHARE) / LENGTH
    p_sentiment, p_neutral = share / (len(POSITIVE) + len(NEGATIVE)), (1 - share) / len(NEUTRAL)
    return -(share * math.log(p_sentiment) + (1 - share) * math.log(p_neutral))


def held_out(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fixed held-out sentences, their masked inputs and labels (one mask draw, seeded), and sentiments."""
    generator = torch.Generator().manual_seed(1234)
    tokens, sentiment = sentences(n, generator)
    inputs, labels = mask_tokens(tokens, MASK_ID, generator)
    return inputs, labels, sentiment


@torch.no_grad()
def masked_scores(model: nn.Module, n: int) -> dict[str, float]:
    """Held-out masked-LM loss; and, at masked sentiment words, how often the top sentiment word predicted
    has the sentence's sentiment (chance: 0.5)."""
    inputs, labels, sentiment = held_out(n)
    chosen = labels != IGNORE
    logits = model(inputs, select=chosen)  # (N, V), row-major over the chosen positions
    loss = F.cross_entropy(logits, labels[chosen]).item()
    rows = sentiment[:, None].expand_as(labels)[chosen]  # each chosen position's sentence sentiment
    is_sentiment = labels[chosen] < word_id(NEUTRAL[0])
    sentiment_ids = torch.arange(word_id(POSITIVE[0]), word_id(NEUTRAL[0]))
    top = sentiment_ids[logits[:, sentiment_ids].argmax(-1)]
    predicted_positive = (top < word_id(NEGATIVE[0])).long()
    right = (predicted_positive == rows)[is_sentiment].float().mean().item()
    return {"loss": loss, "sentiment_of_prediction": right}


def text(ids: Tensor) -> str:
    """A sentence's words after its [CLS], the masks shown as [MASK]."""
    return " ".join("[MASK]" if i == MASK_ID else WORDS[i - FIRST_ORDINARY_ID] for i in ids[1:].tolist())


@torch.no_grad()
def top_words(model: nn.Module, inputs: Tensor, position: int, k: int = 4) -> str:
    logits = model(inputs[None])[0, position, FIRST_ORDINARY_ID:MASK_ID]  # ordinary words only
    return ", ".join(WORDS[i] for i in logits.topk(k).indices.tolist())


def word_similarity(model: nn.Module) -> Tensor:
    """Cosine similarity of the sentiment words' embeddings. Shape: (16, 16)."""
    ids = torch.tensor([word_id(w) for w in POSITIVE + NEGATIVE])
    table = F.normalize(model.embeddings.src.weight[ids].detach(), dim=-1)
    return table @ table.T


def masked_predictions(steps: int, size: Size) -> StepResult:
    """The same held-out masked sentences read by the masked LM as initialised and after ``steps``
    steps."""
    before, _ = pretrained(0, size)
    after, losses = pretrained(steps, size)
    scores = {"before": masked_scores(before, size.test_sentences),
              "after": masked_scores(after, size.test_sentences)}
    inputs, labels, _ = held_out(6)
    rows = []
    for row in range(len(inputs)):
        position = int((labels[row] != IGNORE).nonzero()[0])
        masked = inputs[row].clone()
        masked[position] = MASK_ID
        rows.append([text(masked), WORDS[int(labels[row, position]) - FIRST_ORDINARY_ID],
                     top_words(before, masked, position), top_words(after, masked, position)])
    similarity = word_similarity(after)
    within = (similarity[:8, :8].sum() + similarity[8:, 8:].sum() - 16) / (2 * 8 * 7)
    across = similarity[:8, 8:].mean()
    guess = frequency_guess_loss()
    return StepResult(
        outcome=f"after {steps} steps the held-out masked-word loss fell from "
                f"{scores['before']['loss']:.2f} to {scores['after']['loss']:.2f} nats (the words' "
                f"frequencies alone: {guess:.2f}); the top sentiment word predicted has the sentence's "
                f"sentiment {scores['after']['sentiment_of_prediction']:.0%} of the time (before: "
                f"{scores['before']['sentiment_of_prediction']:.0%}, chance 50%)",
        metrics={"loss_before": scores["before"]["loss"], "loss_after": scores["after"]["loss"],
                 "frequency_guess_loss": guess,
                 "sentiment_before": scores["before"]["sentiment_of_prediction"],
                 "sentiment_after": scores["after"]["sentiment_of_prediction"],
                 "similarity_within": float(within), "similarity_across": float(across)},
        columns=("held-out sentence", "masked word", "top 4 before", "top 4 after"),
        rows=rows,
        figures={"word_similarity": heatmap(similarity, POSITIVE + NEGATIVE, POSITIVE + NEGATIVE,
                                            "cosine similarity of the sentiment words' embeddings after "
                                            "pretraining", cmap="RdBu", xlabel="word", ylabel="word"),
                 "masked_lm_loss": curves({"masked-LM loss": losses}, "loss (nats)",
                                          "masked-LM pretraining on unlabelled sentences")},
        curves={f"masked-LM loss ({steps} steps)": losses},
    )


# --- 2. fine-tuning from the pretrained encoder -----------------------------------------------------
def fine_tuned(start: nn.Module | None, labelled: int, size: Size,
               seed: int = 0) -> tuple[nn.Module, list[float], str]:
    """The classifier fine-tuned on ``labelled`` sentences of the seen words, from random weights or from
    ``start``'s (its embeddings and encoder: ``load_matching``, as ``model.init_from``); also its loss
    curve and the load table's counts."""
    torch.manual_seed(seed)
    model = build(config("encoder_classifier", size), vocab_size=VOCAB, n_classes=2, pad_id=PAD_ID,
                  pooling="mean")
    loaded = "random weights"
    if start is not None:
        report = load_matching(model, start.state_dict(), "the masked LM")
        loaded = (f"{len(report.loaded)} loaded, {len(report.new)} new (the head), {len(report.ignored)} "
                  "ignored")
    tokens, labels = sentences(labelled, torch.Generator().manual_seed(11), SEEN)
    name = "pretrained start" if start is not None else "random start"
    log = toy.train(model, lambda m, _: F.cross_entropy(m(tokens), labels), steps=size.finetune_steps,
                    lr=1e-3, seed=seed, warmup_steps=10, series=f"{name} ({labelled} labelled)")
    return model, log.losses, loaded


@torch.no_grad()
def accuracy(model: nn.Module, words: int | slice, size: Size) -> float:
    tokens, labels = sentences(size.test_sentences, torch.Generator().manual_seed(12), words)
    return (model(tokens).argmax(-1) == labels).float().mean().item()


def with_and_without(labelled: int, size: Size) -> StepResult:
    """The same classifier, the same labelled sentences and steps: from random weights, then from the
    masked LM's."""
    mlm, _ = pretrained(size.pretrain_steps, size)
    results, losses, rows = {}, {}, []
    for name, start in (("random", None), ("pretrained", mlm)):
        model, losses[f"{name} start"], loaded = fine_tuned(start, labelled, size)
        results[name] = {"seen": accuracy(model, SEEN, size),
                         "unseen": accuracy(model, slice(SEEN, None), size)}
        rows.append([f"{name} start", loaded, results[name]["seen"], results[name]["unseen"],
                     losses[f"{name} start"][-1]])
    unseen = ", ".join(POSITIVE[SEEN:4] + NEGATIVE[SEEN:4])
    return StepResult(
        outcome=f"{labelled} labelled sentences of good/great/bad/awful: on sentences of words no label "
                f"showed ({unseen}, ...) the classifier from random weights scores "
                f"{results['random']['unseen']:.0%}, the one from the pretrained encoder "
                f"{results['pretrained']['unseen']:.0%} (on the seen words: "
                f"{results['random']['seen']:.0%} and {results['pretrained']['seen']:.0%})",
        metrics={f"accuracy_{words}_{name}": value for name, by_words in results.items()
                 for words, value in by_words.items()},
        columns=("start", "weights", "accuracy, seen words", "accuracy, unseen words", "final train loss"),
        rows=rows,
        figures={"fine_tuning_loss": curves(losses, "loss (nats)",
                                            f"fine-tuning on {labelled} labelled sentences")},
        curves=losses,
    )


MASKING = """
BERT is pretrained as a masked language model: 15% of the words of unlabelled text are chosen, 80% of those
become [MASK], 10% another word, 10% stay, and the model predicts the original words (Devlin et al. 2019,
Sec. 3.1), with a new draw for every batch (RoBERTa's dynamic masking). Nothing tells it what a sentiment
is; but to guess the word under [MASK] in "superb the [MASK] film" it must notice that sentences keep
to one sentiment. Before pretraining its guesses are noise; after, they are words of the sentence's
sentiment, and the embeddings of words used alike have moved together (the heatmap's two blocks)."""

FINE_TUNING = """
Fine-tuning starts the classifier from the pretrained encoder (model.init_from): its embeddings and encoder
layers load tensor by tensor, the classification head is new, the masked-LM head is ignored. The labels
here only show four sentiment words (good, great, bad, awful); the test sentences use the twelve others.
From random weights the classifier learns the four words and nothing about the rest: it is near chance on
the test. From the pretrained encoder, which learned from unlabelled text that "dreadful" goes with
"awful", the same few labels carry over to words they never showed. This is why BERT is pretrained once
and fine-tuned many times (and why self-pretraining on a task's own text helps, Krishna et al. 2022)."""


def lesson_steps(size: Size) -> list[Step]:
    """The lesson's steps at ``size`` (``FULL``; its test runs ``SMALL``)."""
    return [
        Step("masked predictions before and after pretraining", MASKING,
             lambda steps: masked_predictions(steps, size),
             Knob("pretraining steps", size.pretrain_steps,
                  "0 shows the untrained model; a few hundred steps already sort the words",
                  low=0, high=5000)),
        Step("the same classifier with and without a pretrained start", FINE_TUNING,
             lambda labelled: with_and_without(labelled, size),
             Knob("labelled sentences", 32, "more labels of the same four words do not teach the others",
                  low=4, high=2048)),
    ]


STEPS = lesson_steps(FULL)
