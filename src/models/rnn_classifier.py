"""LSTM, GRU and Elman RNN text classifiers: the recurrent baselines of the Transformer classifier.

Reading order: token embeddings -> a (bidirectional) ``LSTM``/``GRU``/``RNN``
(``src/components/recurrent.py``)
-> the final hidden state of each direction's last layer, concatenated -> the same classification head
as the encoder classifier. The recurrence stops at each text's own last real token, so padding a
batch does not change a text's logits.
"""

from typing import Literal

from torch import Tensor, nn

from src.components.recurrent import GRU, LSTM, RNN
from src.config.model import ModelConfig
from src.models.encoder_classifier import ClassificationHead
from src.models.inputs import check_token_ids

Cell = Literal["lstm", "gru", "rnn"]


class RNNClassifier(nn.Module):
    """Embeddings, a recurrent stack and a classification head.

    Parameter names group by ``embeddings``, ``rnn`` and ``head``.

    Args:
        embedding: token table (padding row kept at zero).
        rnn: an ``LSTM``, ``GRU`` or (Elman) ``RNN`` layer stack, batch first.
        head: the final-state vector (D*H) -> class logits.
        pad_id: padding token id; lengths are derived from it (right-padded input).
        dropout: dropout on the embeddings.
    """

    def __init__(self, embedding: nn.Embedding, rnn: LSTM | GRU | RNN, head: ClassificationHead, pad_id: int,
                 dropout: float) -> None:
        super().__init__()
        self.embeddings, self.rnn, self.head = embedding, rnn, head
        self.dropout = nn.Dropout(dropout)
        self.pad_id = pad_id

    def forward(self, tokens: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list]:
        """Class logits of each text (an RNN has no attention maps: with ``return_attention``, an empty list).

        Shape:
            tokens: (B, T) token ids, padded with ``pad_id`` at the end -> logits (B, K).
        """
        check_token_ids("tokens", tokens)
        mask = tokens != self.pad_id  # (B, T), True at real tokens
        _, state = self.rnn(self.dropout(self.embeddings(tokens)), mask=mask)
        h = state[0] if isinstance(state, tuple) else state  # (L*D, B, H); LSTM also returns c
        directions = 2 if self.rnn.rnn.bidirectional else 1
        last = h[-directions:]  # the last layer's forward (and backward) final states: (D, B, H)
        logits = self.head(last.transpose(0, 1).reshape(tokens.size(0), -1))  # (D, B, H) -> (B, D*H)
        return (logits, []) if return_attention else logits


def build_rnn_classifier(cfg: ModelConfig, cell: Cell, vocab_size: int, n_classes: int,
                         pad_id: int) -> RNNClassifier:
    """``d_model`` is the embedding and hidden width, ``n_encoder_layers`` the number of recurrent layers.

    ``cfg.rnn_bidirectional`` adds a backward direction; ``cfg.rnn_fast`` runs PyTorch's kernel on the
    same weights instead of the equations (see ``src/components/recurrent.py``).
    """
    layers = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[cell]
    rnn = layers(cfg.d_model, cfg.d_model, cfg.n_encoder_layers, bidirectional=cfg.rnn_bidirectional,
                 dropout=cfg.dropout if cfg.n_encoder_layers > 1 else 0.0, fast=cfg.rnn_fast)
    directions = 2 if cfg.rnn_bidirectional else 1
    embedding = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
    return RNNClassifier(embedding, rnn, ClassificationHead(directions * cfg.d_model, n_classes, cfg.dropout),
                         pad_id, cfg.dropout)
