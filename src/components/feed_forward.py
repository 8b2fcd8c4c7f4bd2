"""Position-wise feed-forward network (Vaswani et al. 2017, Sec. 3.3)."""

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["relu", "gelu", "gelu_tanh", "swiglu"]


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (Eq. 2), with GELU or SwiGLU as alternatives.

    GELU (Hendrycks & Gimpel 2016) is x Phi(x) with the exact erf ("gelu", BERT and ViT), or its tanh
    approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Sec. 2; "gelu_tanh", Hugging Face's
    "gelu_new", which real GPT-2 checkpoints were trained with). The two differ by up to about 1e-3, far
    above a 1e-5 parity check, so a folder's weights need the one they were trained with.

    SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer", Eq. 6) is
    FFN_SwiGLU(x, W, V, W2) = (Swish_1(x W) ⊗ x V) W2, Swish_1 = SiLU; ``linear1`` then produces
    both halves at once, rows W (the gate, Llama's ``gate_proj``) then V (``up_proj``), so its
    output is 2 * d_ff wide and the layer has 1.5x the parameters of the ReLU one at the same
    ``d_ff``. Shazeer's variants, like Llama's MLP, have no biases (``bias=False``).

    Args:
        d_model: model width C.
        d_ff: inner width (2048 in the paper's base model).
        dropout: dropout on the inner activations, as in ``torch.nn.TransformerEncoderLayer``.
        activation: "relu" (the paper), "gelu", "gelu_tanh" or "swiglu".
        bias: the b1, b2 of Eq. 2 (False: none, as in Shazeer 2020 and Llama).
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: Activation = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu", "gelu_tanh", "swiglu"):
            raise ValueError(f"activation must be 'relu', 'gelu', 'gelu_tanh' or 'swiglu', "
                             f"got {activation!r}")
        self.activation = activation
        self.linear1 = nn.Linear(d_model, 2 * d_ff if activation == "swiglu" else d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Shape: x: (B, T, C) -> (B, T, C)."""
        hidden = self.linear1(x)
        if self.activation == "swiglu":
            gate, value = hidden.chunk(2, dim=-1)  # (B, T, 2F) -> 2 x (B, T, F)
            hidden = F.silu(gate) * value  # Swish_1(x W) ⊗ x V
        elif self.activation in ("gelu", "gelu_tanh"):
            hidden = F.gelu(hidden, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        else:
            hidden = F.relu(hidden)
        return self.linear2(self.dropout(hidden))
