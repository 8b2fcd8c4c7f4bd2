"""Toy tasks and tiny models the lessons train in seconds, built by the project's own builders.

Token ids: 0 pad, 1 BOS, 2 EOS, then the symbols. Sequences have a fixed length, so no batch
needs padding unless a lesson adds it on purpose.

The loops here are the trainer's step written out (``loss.backward(); clip; step; schedule``,
as ``src/training/trainer.py``) with its pieces: ``translation_loss`` (label-smoothed
cross-entropy ignoring padding), ``make_schedule`` (warm-up), ``grouped_grad_norms``. The full
``Trainer`` reads a tokenized corpus from disk; a lesson's data is a tensor made on the spot.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from src.config.model import ModelConfig
from src.lessons import live
from src.models.builders import build
from src.training.loss import translation_loss
from src.training.monitor import grouped_grad_norms
from src.training.schedule import make_schedule

PAD, BOS, EOS, FIRST_SYMBOL = 0, 1, 2, 3


def symbols(n: int) -> list[str]:
    """Display names of the token ids: the three specials, then ``a``, ``b``, ... for the symbols."""
    return ["<pad>", "<s>", "</s>", *[chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(n)]]


def reverse_batch(batch: int, length: int, n_symbols: int, task: str, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Source, decoder input and labels of the copy or reverse task.

    Shape:
        src: (B, L); tgt_in: (B, L + 1) starting with BOS; labels: (B, L + 1) ending with EOS.
    """
    if task not in ("copy", "reverse"):
        raise ValueError(f"task must be 'copy' or 'reverse', got {task!r}")
    src = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, (batch, length), generator=generator)
    target = src if task == "copy" else src.flip(1)
    bos = torch.full((batch, 1), BOS, dtype=torch.long)
    eos = torch.full((batch, 1), EOS, dtype=torch.long)
    return src, torch.cat([bos, target], 1), torch.cat([target, eos], 1)


def tiny_config(**overrides: object) -> ModelConfig:
    """A 1-layer, 32-wide encoder-decoder on the math attention path (weights available), no dropout."""
    values = {"family": "encoder_decoder", "d_model": 32, "n_heads": 2, "n_encoder_layers": 1,
              "n_decoder_layers": 1, "d_ff": 64, "dropout": 0.0, "max_positions": 32}
    return ModelConfig(**{**values, **overrides})


def seq2seq_model(cfg: ModelConfig, n_symbols: int, seed: int) -> nn.Module:
    """The encoder-decoder Transformer of ``src/models/transformer.py`` for ``n_symbols`` symbols."""
    torch.manual_seed(seed)
    vocab = FIRST_SYMBOL + n_symbols
    return build(cfg, src_vocab_size=vocab, tgt_vocab_size=vocab, pad_id=PAD)


@dataclass
class TrainLog:
    """What a short run recorded: the loss per step, and per-group gradient norms if asked for."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[dict[str, float]] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)

    def final_loss(self, last: int = 10) -> float:
        tail = self.losses[-last:]
        return sum(tail) / len(tail)


def train(model: nn.Module, loss_of_batch: Callable[[nn.Module, torch.Generator], Tensor], *, steps: int,
          lr: float, seed: int, warmup_steps: int = 0, clip: float = 1.0, record_grad_norms: bool = False,
          series: str | None = None) -> TrainLog:
    """Adam (betas 0.9, 0.98, Sec. 5.3), linear warm-up then a cosine decay to 5% of ``lr``; one batch a step.

    Args:
        model: the model to train (left in eval mode afterwards).
        loss_of_batch: draws a batch from the generator and returns the model's loss on it.
        steps: optimizer steps.
        lr: peak learning rate.
        seed: seeds the batch generator.
        warmup_steps: 0 starts at the peak rate.
        clip: gradient-norm clipping threshold (0: off).
        record_grad_norms: keep ``grouped_grad_norms`` of every step (before clipping).
        series: the curve's name: each step's loss goes to ``live.report`` as it is computed, so a
            tracked lesson shows the curve growing (the same name as in the step's ``curves``).
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    schedule = make_schedule("cosine", warmup_steps, steps)  # warm-up 0 starts the cosine at the peak
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    log = TrainLog()
    model.train()
    for step in range(steps):
        loss = loss_of_batch(model, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if record_grad_norms:
            log.grad_norms.append(grouped_grad_norms(model))
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        log.learning_rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
        log.losses.append(loss.item() if torch.isfinite(loss) else float("nan"))
        if series is not None:
            live.report(series, log.losses[-1], step)
    model.eval()
    return log


def seq2seq_loss(task: str, length: int, n_symbols: int, batch: int = 32, label_smoothing: float = 0.0
                 ) -> Callable[[nn.Module, torch.Generator], Tensor]:
    """Loss of a fresh copy/reverse batch under teacher forcing (``translation_loss``)."""

    def loss_of_batch(model: nn.Module, generator: torch.Generator) -> Tensor:
        src, tgt_in, labels = reverse_batch(batch, length, n_symbols, task, generator)
        loss, _ = translation_loss(model(src, tgt_in), labels, PAD, label_smoothing)
        return loss

    return loss_of_batch


def sequence_log_prob(model: nn.Module, src: Tensor, output: Tensor) -> float:
    """log P(output | src) under teacher forcing, up to and including the first EOS.

    Shape:
        src: (1, S); output: (1, L) tokens after BOS, as the decoders return them.
    """
    tokens = output[0].tolist()
    if EOS in tokens:
        tokens = tokens[: tokens.index(EOS) + 1]
    target = torch.tensor([tokens])
    tgt_in = torch.cat([torch.tensor([[BOS]]), target[:, :-1]], 1)
    with torch.no_grad():
        log_probs = model(src, tgt_in).log_softmax(-1)  # (1, L, V)
    return float(log_probs.gather(-1, target[..., None]).sum())


@torch.no_grad()
def cross_attention(model: nn.Module, src: Tensor, tgt_in: Tensor) -> Tensor:
    """The last decoder layer's cross-attention weights under teacher forcing.

    Shape:
        src: (B, S); tgt_in: (B, T) -> (B, H, T, S).
    """
    _, attention = model(src, tgt_in, return_attention=True)
    return attention["cross"][-1]


def lm_batch(pattern: str, batch: int, length: int, n_symbols: int, generator: torch.Generator) -> Tensor:
    """Token sequences with a rule a language model can learn.

    - "walk": each symbol is the previous one plus 1 or 2 (mod n), drawn at random: the next token
      is never certain (ln 2 nats at best), but its two possible values are.
    - "skip": a, b, a+1, b+1, a+2, ... (mod n): each token is the one two places back plus 1, so the
      model must look at the token before the current one.

    Shape: (B, length), symbol ids only (no specials).
    """
    if pattern == "walk":
        steps = torch.randint(1, 3, (batch, length), generator=generator)
        steps[:, 0] = torch.randint(0, n_symbols, (batch,), generator=generator)
        values = steps.cumsum(1) % n_symbols
    elif pattern == "skip":
        start = torch.randint(0, n_symbols, (batch, 2), generator=generator)
        offset = torch.arange(length) // 2  # 0, 0, 1, 1, 2, 2, ...
        values = (start[:, torch.arange(length) % 2] + offset) % n_symbols
    else:
        raise ValueError(f"pattern must be 'walk' or 'skip', got {pattern!r}")
    return values + FIRST_SYMBOL


def lm_loss(pattern: str, length: int, n_symbols: int, batch: int = 32, **forward_kwargs: object
            ) -> Callable[[nn.Module, torch.Generator], Tensor]:
    """Next-token loss of a fresh ``lm_batch`` (``translation_loss`` on inputs shifted by one)."""

    def loss_of_batch(model: nn.Module, generator: torch.Generator) -> Tensor:
        tokens = lm_batch(pattern, batch, length, n_symbols, generator)
        loss, _ = translation_loss(model(tokens[:, :-1], **forward_kwargs), tokens[:, 1:], PAD)
        return loss

    return loss_of_batch


def lm_config(**overrides: object) -> ModelConfig:
    """A 2-layer, 32-wide decoder-only LM (GPT-2 wiring) without dropout."""
    values = {"family": "decoder_lm", "d_model": 32, "n_heads": 2, "n_decoder_layers": 2, "d_ff": 64,
              "dropout": 0.0, "max_positions": 64, "positional_encoding": "learned"}
    return ModelConfig(**{**values, **overrides})


def lm_model(cfg: ModelConfig, n_symbols: int, seed: int) -> nn.Module:
    """The decoder-only LM of ``src/models/decoder_lm.py`` for ``n_symbols`` symbols."""
    torch.manual_seed(seed)
    return build(cfg, vocab_size=FIRST_SYMBOL + n_symbols, pad_id=PAD)
