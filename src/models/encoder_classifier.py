"""An encoder-only classifier in the manner of BERT (Devlin et al. 2019): the Transformer's encoder
stack reads the whole text at once, one vector sums it up, a small head scores the classes.

Reading order: token + positional embeddings -> ``Encoder`` (the same layers as the translation
model, ``src/models/layers.py``) -> ``pool`` -> ``head``. Padding is masked in every attention
layer and in mean pooling, so padding a batch does not change a text's logits. Where the encoder allows
it (``Encoder.packs``) and no attention weights are asked for, it runs on the real tokens alone, packed
(``src/components/packing.py``): the same logits, without the padding's share of the work.

Pooling (``pooling``):
- ``"cls"``: the hidden state of the first token, which the data step makes a ``[CLS]`` token
  (BERT, Sec. 3: "The final hidden state corresponding to this token is used as the aggregate
  sequence representation for classification tasks").
- ``"mean"``: the mean of the hidden states of the real tokens (Reimers & Gurevych 2019 found it
  the stronger sentence vector without pre-training).
"""

from typing import Literal

import torch
from torch import Tensor, nn

from src.components.embeddings import Embeddings
from src.components.masks import padding_mask
from src.components.packing import Packed
from src.config.model import ModelConfig
from src.models.inputs import check_token_ids
from src.models.layers import Encoder
from src.models.transformer import build_embeddings, build_encoder, init_weights

Pooling = Literal["cls", "mean"]


class ClassificationHead(nn.Module):
    """BERT's pooler (dense + tanh) then dropout and a linear layer to the class logits.

    Args:
        d_model: width C of the pooled vector.
        n_classes: number of classes K.
        dropout: dropout before the final layer.
    """

    def __init__(self, d_model: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        """Shape: (B, C) -> (B, K)."""
        return self.out(self.dropout(torch.tanh(self.dense(pooled))))


def pool(hidden: Tensor, mask: Tensor, pooling: Pooling) -> Tensor:
    """One vector per text from the encoder's hidden states.

    Shape:
        hidden: (B, T, C); mask: (B, T) boolean, True at real tokens -> (B, C).
    """
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T) -> (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class EncoderClassifier(nn.Module):
    """Embeddings, the encoder stack, pooling and a classification head.

    Parameter names group by ``embeddings``, ``encoder.layers.{i}`` and ``head``, as in the
    translation model, so gradient-norm monitoring and heatmaps read the same way.

    Args:
        embeddings: token + positional embeddings (only the source side is used).
        encoder: encoder stack.
        head: pooled vector -> class logits.
        pad_id: padding token id; masks are derived from it.
        pooling: ``"cls"`` or ``"mean"`` (see the module docstring).
    """

    def __init__(self, embeddings: Embeddings, encoder: Encoder, head: ClassificationHead, pad_id: int,
                 pooling: Pooling) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.embeddings, self.encoder, self.head = embeddings, encoder, head
        self.pad_id, self.pooling = pad_id, pooling

    def forward(self, tokens: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Class logits of each text; with ``return_attention`` also each layer's weights (B, H, T, T).

        Shape:
            tokens: (B, T) token ids, padded with ``pad_id`` at the end -> logits (B, K).
        """
        hidden, mask, weights = self.hidden_states(tokens, return_attention)
        logits = self.head(pool(hidden, mask, self.pooling))
        return (logits, weights) if return_attention else logits

    def hidden_states(self, tokens: Tensor,
                      need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The encoder's last hidden states (BERT's ``last_hidden_state``), the padding mask and the weights.

        Shape:
            tokens: (B, T) -> hidden (B, T, C), mask (B, T) boolean, True at real tokens.
        """
        check_token_ids("tokens", tokens)
        mask = padding_mask(tokens, self.pad_id)  # (B, 1, 1, T), True at real tokens
        x = self.embeddings.source(tokens)
        if need_weights or not self.encoder.packs or _traced():
            hidden, weights = self.encoder(x, mask, need_weights=need_weights)
            return hidden, mask[:, 0, 0], weights
        # the encoder on the real tokens alone (src/components/packing.py); padding rows come back as zeros
        packed = Packed.from_mask(mask[:, 0, 0])
        hidden, _ = self.encoder(packed.pack(x), None, packed=packed)
        return packed.unpack(hidden), mask[:, 0, 0], []


def _traced() -> bool:
    """Under ONNX export, tracing or compilation the padded path runs: packing reads the lengths on the host,
    which a graph cannot hold."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def build_encoder_classifier(cfg: ModelConfig, vocab_size: int, n_classes: int, pad_id: int,
                             pooling: Pooling = "cls") -> EncoderClassifier:
    """The classifier from the same builders as the translation model, initialised the same way.

    Args:
        cfg: model hyperparameters; the decoder keys are unused.
        vocab_size: tokenizer vocabulary size.
        n_classes: number of classes K.
        pad_id: padding token id.
        pooling: ``"cls"`` or ``"mean"``.
    """
    embeddings = build_embeddings(cfg, vocab_size, vocab_size, share=True)
    head = ClassificationHead(cfg.d_model, n_classes, cfg.dropout)
    model = EncoderClassifier(embeddings, build_encoder(cfg), head, pad_id, pooling)
    init_weights(model, cfg.d_model)
    return model
