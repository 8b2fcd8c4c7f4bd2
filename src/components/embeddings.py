"""Token embeddings and positional encodings, the input of both stacks (Vaswani et al. 2017, Sec. 3.4-3.5)."""

import math

import torch
from torch import Tensor, nn


class Embeddings(nn.Module):
    """Embedding(tokens) * sqrt(d_model) + PE, then dropout (Sec. 3.4, 3.5, 5.4).

    BERT's input (Devlin et al. 2019, Sec. 3, Fig. 2) is the sum of token, segment (token-type) and
    position embeddings, then a LayerNorm, with no sqrt(d_model) scale: ``type_vocab_size`` > 0 adds the
    token-type table (every text here is one segment, type 0) and ``norm_eps`` the LayerNorm, which also
    drops the scale (the norm sets the sum's scale; Hugging Face's ``BertEmbeddings`` has none).

    Source and target share one table when ``share`` is True (Sec. 3.4 shares it with the output
    projection too, which the model ties separately). The positional encoding has no per-side
    state worth separating, so both sides use the same one.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size; must equal ``src_vocab_size`` when shared.
        d_model: model width C.
        positional: a module from ``positional_encoding`` (``forward(x, start)``).
        dropout: dropout on the sum (P_drop = 0.1 in the base model).
        share: one table for source and target.
        type_vocab_size: rows of the token-type table (BERT: 2); 0 = no table.
        norm_eps: epsilon of a LayerNorm on the sum (BERT: 1e-12); None = no norm, and the sqrt(C) scale.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int,
        positional: nn.Module,
        dropout: float,
        share: bool,
        *,
        type_vocab_size: int = 0,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if share and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"shared embeddings need equal vocabularies, got src_vocab_size={src_vocab_size} "
                f"and tgt_vocab_size={tgt_vocab_size}"
            )
        self.src = nn.Embedding(src_vocab_size, d_model)
        self.tgt = self.src if share else nn.Embedding(tgt_vocab_size, d_model)
        self.positional = positional
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(d_model) if norm_eps is None else 1.0
        self.token_type = nn.Embedding(type_vocab_size, d_model) if type_vocab_size else None
        self.norm = nn.LayerNorm(d_model, eps=norm_eps) if norm_eps is not None else None

    def source(self, src: Tensor) -> Tensor:
        """Shape: src: (B, S) token ids -> (B, S, C)."""
        return self._embed(src, self.src, start=0)

    def target(self, tgt: Tensor, start: int = 0) -> Tensor:
        """Shape: tgt: (B, T) token ids, the first at position ``start`` -> (B, T, C)."""
        return self._embed(tgt, self.tgt, start)

    def _embed(self, tokens: Tensor, table: nn.Embedding, start: int) -> Tensor:
        check_token_ids(tokens)
        x = table(tokens) * self.scale
        if self.token_type is not None:  # every token is in segment 0: its row, broadcast over (B, T)
            x = x + self.token_type.weight[0]
        x = self.positional(x, start)
        return self.dropout(x if self.norm is None else self.norm(x))


def check_token_ids(tokens: Tensor) -> None:
    """Raise ValueError unless ``tokens`` is a (B, L) integer tensor."""
    if tokens.dtype not in (torch.long, torch.int32):
        raise ValueError(
            f"token ids must be an integer tensor (expected torch.long), got dtype {tokens.dtype}"
        )
    if tokens.dim() != 2:
        raise ValueError(f"token ids must have shape (B, L), got shape {tuple(tokens.shape)}")
