"""Language modelling as a task of the one training loop (``src/training/trainer.py``).

A split is one token stream: each document is ``<s>`` then its tokens (``encode_stream``), so
every token of the text, and every document start, is predicted from what precedes it. Training items are
windows of ``block_size + 1`` tokens at stride ``block_size`` (input = the first ``block_size``, target =
the last ``block_size``); each has length 1 for the sampler, so a batch holds ``batch_size``
windows. The loss is next-token cross-entropy; validation reports loss, perplexity and bits per
character, bpc = total nats / characters of the text / ln 2, which compares tokenizers: at
character level it is loss / ln 2. The register step gates on test bpc, lower being better.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.special_tokens import BOS_ID, PAD_ID
from src.training.loss import perplexity
from src.training.task import evaluating

Batch = tuple[Tensor, Tensor]  # (inputs (B, T), targets (B, T))
SEPARATOR = "\n\n"


def encode_stream(tokenizer, text: str) -> tuple[list[int], int]:
    """``<s>`` before every document, then the document's ids; and the characters the stream stands for.

    ``<s>`` marks where a document starts, as GPT-2's ``<|endoftext|>`` does between documents
    (Radford et al. 2019, Sec. 2.1), so a prompt that starts with ``<s>`` (``generate``, the probe)
    looks like the start of any training document. The characters are the documents' own plus one
    per boundary, the ``<s>`` that stands for it: at character level every predicted token is then
    one character, and bpc = loss / ln 2 exactly.

    Shape:
        text: documents joined by ``SEPARATOR`` -> ids: (sum of the documents' tokens + one per document,).
    """
    docs = [doc for doc in text.split(SEPARATOR) if doc]
    ids = []
    for encoding in tokenizer.encode_batch_fast(docs):  # in parallel, one document at a time
        ids += [BOS_ID, *encoding.ids]
    return ids, sum(map(len, docs)) + max(len(docs) - 1, 0)


def decode_stream(tokenizer, ids: list[int]) -> str:
    """Text of a generated stream: each ``<s>`` (a new document) becomes a blank line, as in the corpus
    files."""
    documents, current = [], []
    for token in ids:
        if token == BOS_ID:
            documents.append(current)
            current = []
        else:
            current.append(int(token))
    documents.append(current)
    return SEPARATOR.join(tokenizer.decode(doc, skip_special_tokens=True) for doc in documents if doc)


def lm_metrics(total_nats: float, n_tokens: int, n_characters: int) -> dict[str, float]:
    """Mean loss per token, its perplexity, and bits per character (total nats / characters / ln 2)."""
    loss = total_nats / max(n_tokens, 1)
    return {"loss": loss, "perplexity": perplexity(loss),
            "bpc": total_nats / max(n_characters, 1) / math.log(2)}


@dataclass
class TokenStream:
    """One split's token ids, the number of characters of its text, and the window size."""

    ids: Tensor  # (N,) int64
    characters: int
    block_size: int

    def __len__(self) -> int:
        return max((self.ids.numel() - 1) // self.block_size, 0)

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        """Windows ``indices``: inputs and next-token targets, each (B, block_size)."""
        starts = torch.tensor(indices) * self.block_size
        windows = self.ids[starts[:, None] + torch.arange(self.block_size + 1)]  # (B, T+1)
        return windows[:, :-1].to(device), windows[:, 1:].to(device)

    def prefix(self, n_tokens: int | None) -> "TokenStream":
        """The first ``n_tokens`` tokens (their share of the characters), for a cheaper validation."""
        if n_tokens is None or n_tokens >= self.ids.numel():
            return self
        characters = round(self.characters * (n_tokens - 1) / max(self.ids.numel() - 1, 1))
        return TokenStream(self.ids[:n_tokens], characters, self.block_size)



def read_stream(tok_dir: Path, name: str, size: int) -> TokenStream:
    """Split ``name`` as the tokenize step saved it in ``tok_dir``: ``<name>_ids.npy`` and ``stream.json``."""
    import numpy as np

    characters = json.loads((tok_dir / "stream.json").read_text(encoding="utf-8"))[name]["characters"]
    return TokenStream(torch.from_numpy(np.load(tok_dir / f"{name}_ids.npy")).long(), characters, size)

@torch.no_grad()
def score_stream(model: nn.Module, stream: TokenStream, batch_size: int,
                 device: torch.device) -> dict[str, float]:
    """``lm_metrics`` over every token after ``<s>``: full windows in batches, then the shorter tail."""
    with evaluating(model):
        total, n = 0.0, 0
        for first in range(0, len(stream), batch_size):
            inputs, targets = stream.batch(list(range(first, min(first + batch_size, len(stream)))), device)
            total += F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten(),
                                     reduction="sum").item()
            n += targets.numel()
        tail = stream.ids[len(stream) * stream.block_size :].to(device)  # (R,): R - 1 tokens left to predict
        if tail.numel() > 1:
            logits = model(tail[None, :-1])[0].float()  # (R-1, V)
            total += F.cross_entropy(logits, tail[1:], reduction="sum").item()
            n += tail.numel() - 1
    return lm_metrics(total, n, stream.characters)


@dataclass
class LanguageModelingTask:
    """The training and validation streams, the vocabulary, validation settings and the probe."""

    train: TokenStream
    valid: TokenStream
    vocab_size: int
    batch_size: int
    valid_max_tokens: int | None = None
    probe: "LanguageModelProbe | None" = field(default=None)  # defined below

    def model_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "pad_id": PAD_ID}

    def lengths(self) -> tuple[list[int], list[int]]:
        ones = [1] * len(self.train)  # every window costs 1: a batch is batch_size windows
        return ones, ones

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        return self.train.batch(indices, device)

    def targets(self, batch: Batch) -> int:
        return int(batch[1].numel())

    def tokens(self, batch: Batch) -> int:
        return int(batch[0].numel())

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean next-token cross-entropy over the batch's B x T predictions, and their count."""
        inputs, targets = batch
        logits = model(inputs)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                               label_smoothing=label_smoothing)
        return loss, int(targets.numel())

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, float]:
        """Loss (it picks the best checkpoint), perplexity and bpc on the first ``valid_max_tokens``
        tokens."""
        return score_stream(model, self.valid.prefix(self.valid_max_tokens), self.batch_size, device)


def axis_labels(tokenizer, ids: list[int], char_level: bool) -> list[str]:
    """Heatmap axis labels: the characters (whitespace made visible), or the BPE subwords."""
    from src.data.char_tokenizer import char_labels
    from src.training.probe import token_labels

    return char_labels(tokenizer, ids) if char_level else token_labels(tokenizer, ids)


@dataclass
class LanguageModelProbe:
    """Fixed prompts: the attention of the first over itself, and what the model writes after each.

    At every report, one figure per prompt shows each layer (rows) and head (columns) of causal
    self-attention, and one table lists every prompt with its greedy and its sampled continuation
    (a fixed seed, so the rows change only because the model does).
    """

    prompts: list[list[int]]
    tokenizer: object
    char_level: bool
    max_new_tokens: int = 64
    heatmap_prompts: int = 1
    temperature: float = 0.8
    top_p: float = 0.95

    @classmethod
    def from_text(cls, text: str, tokenizer, char_level: bool, n_prompts: int, prompt_tokens: int = 24,
                  **kwargs) -> "LanguageModelProbe":
        """The first ``prompt_tokens`` tokens of the first ``n_prompts`` documents of ``text``."""
        docs = [d for d in text.split(SEPARATOR) if d.strip()][:n_prompts]
        prompts = [[BOS_ID, *tokenizer.encode(d).ids[: prompt_tokens - 1]] for d in docs]
        return cls(prompts, tokenizer, char_level, **kwargs)

    def decode(self, ids: list[int]) -> str:
        return decode_stream(self.tokenizer, [int(i) for i in ids])

    def samples(self, model: nn.Module):
        """A DataFrame: prompt, greedy continuation, sampled continuation."""
        import pandas as pd

        from src.models.sampling import generate

        rows, device = [], next(model.parameters()).device
        for i, prompt in enumerate(self.prompts):
            greedy = generate(model, prompt, self.max_new_tokens, temperature=0.0)[0].tolist()
            sampled = generate(model, prompt, self.max_new_tokens, temperature=self.temperature,
                               top_p=self.top_p,
                               generator=torch.Generator(device=device).manual_seed(i))[0].tolist()
            text = self.decode(prompt)
            rows.append({"prompt": text, "greedy": self.decode(greedy)[len(text):],
                         f"sampled (T={self.temperature}, top-p {self.top_p})":
                             self.decode(sampled)[len(text):]})
        return pd.DataFrame(rows)

    @torch.no_grad()
    def report(self, model: nn.Module, tracker, step: int) -> None:
        from src.training.probe import shorten
        from src.visualization import plot_attention

        with evaluating(model):
            device = next(model.parameters()).device
            for i, prompt in enumerate(self.prompts[: self.heatmap_prompts]):
                _, layers = model(torch.tensor([prompt], device=device), return_attention=True)
                weights = torch.stack([layer[0].float().cpu() for layer in layers])  # (L, H, T, T)
                labels = axis_labels(self.tokenizer, prompt, self.char_level)
                title = f'causal self-attention · step {step} · "{shorten(self.decode(prompt))}"'
                tracker.log_figure("attention/decoder_self", f"prompt {i}",
                                   plot_attention(weights, labels, labels, title,
                                                                                          label_every_head=False),
                                   step)
            tracker.log_table("samples", "continuations", self.samples(model), step)
