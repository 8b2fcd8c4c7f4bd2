"""Masked-LM pretraining as a task of the one training loop (``src/training/trainer.py``).

A text is encoded as the classifier encodes it (``[CLS] + tokens``, ``encode_texts``), so the pretrained
encoder reads at fine-tuning exactly what it read here. Masking (Devlin et al. 2019, Sec. 3.1 and
Appendix A.1): of each text's maskable tokens (neither special nor padding) ``round(15%)``, at least
one, are chosen, as BERT's ``create_pretraining_data.py`` does (``num_to_predict``, there 15% of the whole
sequence, [CLS] and [SEP] counted); a chosen token
becomes ``[MASK]`` with probability 0.8, a random ordinary token with 0.1, and stays itself with 0.1.
Training batches are masked afresh each time they are drawn (RoBERTa's dynamic masking, Liu et al. 2019,
Sec. 4.1): the loop seeds torch per micro-batch and step before ``batch``, so two epochs mask a text
differently and a resumed run draws the same masks. Validation and test use one fixed mask per text
(``fixed_masks``, seeded), so every validation, and every run on the same split, scores the same positions.

The loss is the cross-entropy at the chosen positions only; validation reports it (it picks the best
checkpoint), the accuracy of the top prediction there, and its perplexity. The probe shows the
top-5 predictions at the masked words of a few held-out texts, and what each masked position attends to.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.batching import TokenBudgetBatchSampler
from src.data.special_tokens import PAD_ID, SPECIAL_TOKENS
from src.training.probe import readable_labels, shorten
from src.training.task import evaluating

# (inputs (B, T) with the masks applied, labels (B, T): IGNORE where not chosen)
Batch = tuple[Tensor, Tensor]
IGNORE = -100  # label of a position that is not predicted (cross_entropy's ignore_index)
FIRST_ORDINARY_ID = len(SPECIAL_TOKENS)  # ids below are <pad>, <s> ([CLS]), </s>, <unk>: never chosen
MASK_RATE, MASK_SHARE, RANDOM_SHARE = 0.15, 0.8, 0.1  # BERT's 15%, then 80% [MASK] / 10% random / 10% kept
VALID_SEED, TEST_SEED = 1, 2  # the fixed masks of the validation and test splits


def maskable(tokens: Tensor, mask_id: int) -> Tensor:
    """True at the positions that may be chosen: ordinary tokens (no special token, padding or [MASK])."""
    return (tokens >= FIRST_ORDINARY_ID) & (tokens != mask_id)


def choose_positions(tokens: Tensor, mask_id: int, generator: torch.Generator | None = None) -> Tensor:
    """BERT's choice: ``max(1, round(0.15 n))`` of each text's ``n`` maskable positions, uniformly at random.

    Shape:
        tokens: (B, T) right-padded ids -> (B, T) boolean, True at the chosen positions.
    """
    candidate = maskable(tokens, mask_id)
    n = candidate.sum(dim=1)  # (B,)
    k = torch.where(n > 0, (n * MASK_RATE).round().clamp(min=1), n)  # (B,)
    # candidates take uniform scores in [0, 1), the others 2: the k lowest ranks are k random candidates
    scores = torch.rand(tokens.shape, generator=generator).masked_fill(~candidate, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T): each position's rank in its row
    return ranks < k[:, None]


def mask_tokens(tokens: Tensor, mask_id: int, generator: torch.Generator | None = None) -> Batch:
    """The 80/10/10 rule at the chosen positions: model inputs, and labels (the original ids there, else
    ``IGNORE``). A random replacement is an ordinary token, ids ``FIRST_ORDINARY_ID`` to ``mask_id - 1``
    ([MASK] is the vocabulary's last id, ``MaskedLMTask`` checks).

    Shape:
        tokens: (B, T) right-padded ids on the CPU -> inputs (B, T), labels (B, T).
    """
    chosen = choose_positions(tokens, mask_id, generator)
    draw = torch.rand(tokens.shape, generator=generator)
    inputs = tokens.masked_fill(chosen & (draw < MASK_SHARE), mask_id)
    swap = chosen & (draw >= MASK_SHARE) & (draw < MASK_SHARE + RANDOM_SHARE)
    inputs[swap] = torch.randint(FIRST_ORDINARY_ID, mask_id, (int(swap.sum()),), generator=generator)
    return inputs, tokens.masked_fill(~chosen, IGNORE)


def pad(rows: list[list[int]], value: int = PAD_ID) -> Tensor:
    """Right-padded (B, T) tensor of ``rows``, T the longest row."""
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@dataclass
class TextCorpus:
    """One split's token ids (``[CLS] + tokens``), in memory for fast batching."""

    ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> tuple[list[int], list[int]]:
        lengths = [len(ids) for ids in self.ids]
        return lengths, lengths  # the sampler sizes batches by the longer side; a text has one


@dataclass
class MaskedCorpus:
    """Texts with one fixed mask each: the model inputs and the labels (``IGNORE`` where not chosen)."""

    inputs: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        inputs = pad([self.inputs[i] for i in indices])
        labels = pad([self.labels[i] for i in indices], IGNORE)
        return inputs.to(device), labels.to(device)


def fixed_masks(ids: list[list[int]], mask_id: int, seed: int) -> MaskedCorpus:
    """Each text masked once by a generator seeded with ``seed``, text by text in order: the masks do not
    depend on how the texts are later batched, so runs with other batch budgets score the same positions."""
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = [], []
    for row in ids:
        masked, label = mask_tokens(torch.tensor([row], dtype=torch.long), mask_id, generator)
        inputs.append(masked[0].tolist())
        labels.append(label[0].tolist())
    return MaskedCorpus(inputs, labels)


@torch.no_grad()
def score_masked(model: nn.Module, corpus: MaskedCorpus, max_tokens: int,
                 device: torch.device) -> dict[str, float]:
    """Masked-token loss (mean cross-entropy at the chosen positions), accuracy of the top prediction there,
    the loss's perplexity, and the counts."""
    with evaluating(model):
        lengths = [len(row) for row in corpus.inputs]
        total, hits, n = 0.0, 0, 0
        for indices in TokenBudgetBatchSampler(lengths, lengths, max_tokens, shuffle=False):
            inputs, labels = corpus.batch(indices, device)
            chosen = labels != IGNORE
            logits = model(inputs, select=chosen).float()  # (N, V)
            total += F.cross_entropy(logits, labels[chosen], reduction="sum").item()
            hits += int((logits.argmax(-1) == labels[chosen]).sum())
            n += int(chosen.sum())
    loss = total / max(n, 1)
    return {"loss": loss, "accuracy": hits / max(n, 1), "perplexity": math.exp(min(loss, 50.0)),
            "n_masked": n, "n_texts": len(corpus)}


@dataclass
class MaskedLMProbe:
    """A few held-out texts with some words replaced by [MASK]: the model's top-5 guesses for each, and what
    each masked position attends to.

    The positions are BERT's choice (``choose_positions``, a fixed seed), every one shown as [MASK] (no
    80/10/10: the probe asks what is behind the mask). One table lists every masked word with its answer
    and the five most probable tokens; one figure per text draws the masked positions' attention rows.
    """

    inputs: list[list[int]]
    labels: list[list[int]]
    tokenizer: object
    top_k: int = 5

    @classmethod
    def from_ids(cls, ids: list[list[int]], tokenizer, mask_id: int, max_tokens: int = 48,
                 seed: int = 0) -> "MaskedLMProbe":
        generator = torch.Generator().manual_seed(seed)
        inputs, labels = [], []
        for row in ids:
            tokens = torch.tensor([row[:max_tokens]], dtype=torch.long)
            chosen = choose_positions(tokens, mask_id, generator)
            inputs.append(tokens.masked_fill(chosen, mask_id)[0].tolist())
            labels.append(tokens.masked_fill(~chosen, IGNORE)[0].tolist())
        return cls(inputs, labels, tokenizer)

    def label(self, token_id: int) -> str:
        return readable_labels(self.tokenizer, [int(token_id)])[0]

    def masked_text(self, inputs: list[int], labels: list[int]) -> str:
        """The text as the model reads it, each chosen token shown as [MASK] (after ``[CLS]``)."""
        from tokenizers import pre_tokenizers

        words = readable_labels(self.tokenizer, inputs[1:])
        if not isinstance(self.tokenizer.pre_tokenizer, pre_tokenizers.ByteLevel):  # words: one per token
            return " ".join(words)
        # byte-level BPE: "▁" starts a word; a [MASK] starts one where the token it hides does
        shown = [word if answer == IGNORE else ("▁" if self.label(answer).startswith("▁") else "") + word
                 for word, answer in zip(words, labels[1:])]
        return "".join(shown).replace("▁", " ").strip()

    def predictions(self, model: nn.Module):
        """A DataFrame, one row per masked word: text, position, answer, its rank, the top-k with
        probabilities."""
        import pandas as pd

        rows, device = [], next(model.parameters()).device
        for index, (inputs, labels) in enumerate(zip(self.inputs, self.labels)):
            probabilities = model(torch.tensor([inputs], device=device))[0].float().softmax(-1)  # (T, V)
            text = shorten(self.masked_text(inputs, labels), 300)
            for position, answer in enumerate(labels):
                if answer == IGNORE:
                    continue
                p = probabilities[position]
                top = p.topk(self.top_k)
                rows.append({"text": index, "masked text": text, "position": position,
                             "answer": self.label(answer), "answer rank": int((p > p[answer]).sum()) + 1,
                             f"top {self.top_k}": ", ".join(f"{self.label(i)} ({v:.2f})" for v, i in
                                                            zip(top.values.tolist(), top.indices.tolist()))})
        return pd.DataFrame(rows)

    @torch.no_grad()
    def report(self, model: nn.Module, tracker, step: int) -> None:
        from src.visualization import plot_attention

        with evaluating(model):
            device = next(model.parameters()).device
            tracker.log_table("masked predictions", f"top {self.top_k}", self.predictions(model), step)
            for index, (inputs, labels) in enumerate(zip(self.inputs, self.labels)):
                positions = [i for i, label in enumerate(labels) if label != IGNORE]
                _, layers = model(torch.tensor([inputs], device=device), return_attention=True)
                # (L, H, Q, T)
                weights = torch.stack([layer[0, :, positions].float().cpu() for layer in layers])
                keys = readable_labels(self.tokenizer, inputs)
                queries = [f"[MASK]={self.label(labels[i])}" for i in positions]
                title = f"masked positions' attention · step {step} · text {index}"
                figure = plot_attention(weights, queries, keys, title, label_every_head=False)
                tracker.log_figure("attention/masked", f"text {index}", figure, step)


@dataclass
class MaskedLMTask:
    """The training texts (masked when drawn), the fixed-mask validation texts, the vocabulary and the
    probe."""

    train: TextCorpus
    valid: MaskedCorpus
    vocab_size: int
    mask_id: int
    probe: MaskedLMProbe | None = None

    def __post_init__(self) -> None:
        if self.mask_id != self.vocab_size - 1:
            raise ValueError(f"[MASK] must be the vocabulary's last id (random replacements draw ids "
                             f"{FIRST_ORDINARY_ID}..mask_id-1): expected {self.vocab_size - 1}, got "
                             f"{self.mask_id}")

    def model_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "pad_id": PAD_ID}

    def lengths(self) -> tuple[list[int], list[int]]:
        return self.train.lengths()

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        """The texts at ``indices``, padded and masked now (the loop has seeded torch for this batch)."""
        inputs, labels = mask_tokens(pad([self.train.ids[i] for i in indices]), self.mask_id)
        return inputs.to(device), labels.to(device)

    def targets(self, batch: Batch) -> int:
        """Loss terms in a batch: one per chosen position."""
        return int((batch[1] != IGNORE).sum())

    def tokens(self, batch: Batch) -> int:
        return int((batch[0] != PAD_ID).sum())

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean cross-entropy over the chosen positions, and their count; the others cost nothing, not
        even their logits."""
        inputs, labels = batch
        chosen = labels != IGNORE
        logits = model(inputs, select=chosen).float()  # (N, V)
        return F.cross_entropy(logits, labels[chosen], label_smoothing=label_smoothing), int(chosen.sum())

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, float]:
        """Masked-token loss (it picks the best checkpoint), accuracy and perplexity on the fixed masks."""
        scores = score_masked(model, self.valid, max_tokens, device)
        return {key: scores[key] for key in ("loss", "accuracy", "perplexity")}
