"""An encoder pretrained as a masked language model (BERT: Devlin et al. 2019, Sec. 3.1, "Masked LM").

Reading order: token + positional embeddings -> ``Encoder`` -> ``MaskedLMHead`` at the chosen positions.
The embeddings and the encoder are built by the very builders of the encoder classifier
(``src/models/encoder_classifier.py``), so their parameters carry the same names (``embeddings.*``,
``encoder.layers.{i}.*``) and shapes: a pretrained encoder loads into a classifier tensor by tensor
(``model.init_from``). The head is named ``mlm_head`` so that none of its tensors is mistaken for the
classifier's ``head`` (whose pooler ``head.dense`` has the same shape as this head's transform).

The head is BERT's (``BertLMPredictionHead`` of the reference implementation): a dense layer, GELU and
LayerNorm, then the output projection tied to the token embedding (as the translation model ties its
generator, Vaswani et al. 2017, Sec. 3.4) plus a bias per vocabulary entry.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.components.embeddings import Embeddings
from src.components.masks import padding_mask
from src.config.model import ModelConfig
from src.models.inputs import check_token_ids
from src.models.layers import Encoder
from src.models.transformer import build_embeddings, build_encoder, init_weights


class MaskedLMHead(nn.Module):
    """Hidden state -> vocabulary logits: dense, GELU, LayerNorm, the tied embedding, a bias.

    The embedding table is passed to ``forward`` rather than held: held, it would be initialised again as
    a linear layer (``init_weights``) and saved twice.

    Args:
        d_model: width C.
        vocab_size: V, the bias's length.
        eps: the LayerNorm's epsilon (the encoder's ``layer_norm_eps``).
    """

    def __init__(self, d_model: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: Tensor, embedding: Tensor) -> Tensor:
        """Shape: hidden (..., C), embedding (V, C) -> (..., V)."""
        return F.linear(self.norm(F.gelu(self.dense(hidden))), embedding, self.bias)


class EncoderMaskedLM(nn.Module):
    """Embeddings, the encoder stack and the masked-LM head.

    Args:
        embeddings: token + positional embeddings (only the source side is used).
        encoder: encoder stack.
        head: hidden states -> vocabulary logits.
        pad_id: padding token id; masks are derived from it.
    """

    def __init__(self, embeddings: Embeddings, encoder: Encoder, head: MaskedLMHead, pad_id: int) -> None:
        super().__init__()
        self.embeddings, self.encoder, self.mlm_head, self.pad_id = embeddings, encoder, head, pad_id

    def forward(self, tokens: Tensor, select: Tensor | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Vocabulary logits at every position, or only at the ``select`` ones (the head is the costly part:
        C x V per position, and the loss needs 15% of them); with ``return_attention`` also each layer's
        weights (B, H, T, T).

        Shape:
            tokens: (B, T) token ids, padded with ``pad_id`` at the end; select: (B, T) boolean
            -> logits (B, T, V), or (N, V) for the N selected positions in row-major order.
        """
        check_token_ids("tokens", tokens)
        mask = padding_mask(tokens, self.pad_id)  # (B, 1, 1, T), True at real tokens
        hidden, weights = self.encoder(self.embeddings.source(tokens), mask, need_weights=return_attention)
        hidden = hidden if select is None else hidden[select]  # (B, T, C) -> (N, C)
        logits = self.mlm_head(hidden, self.embeddings.src.weight)  # (..., C) -> (..., V)
        return (logits, weights) if return_attention else logits


def build_encoder_mlm(cfg: ModelConfig, vocab_size: int, pad_id: int) -> EncoderMaskedLM:
    """The masked LM from the encoder classifier's builders, initialised the same way.

    Args:
        cfg: model hyperparameters; the decoder keys are unused.
        vocab_size: tokenizer vocabulary size, ``[MASK]`` included.
        pad_id: padding token id.
    """
    embeddings = build_embeddings(cfg, vocab_size, vocab_size, share=True)
    head = MaskedLMHead(cfg.d_model, vocab_size, cfg.layer_norm_eps)
    model = EncoderMaskedLM(embeddings, build_encoder(cfg), head, pad_id)
    init_weights(model, cfg.d_model)
    return model
