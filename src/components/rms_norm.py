"""Root mean square layer normalization, RMSNorm (Zhang & Sennrich 2019, Sec. 4).

LayerNorm re-centres (subtracts the mean) and re-scales. RMSNorm keeps only the re-scaling,
arguing that re-scaling invariance is what helps, and drops the bias with the mean:

    ā_i = a_i / RMS(a) * g_i,    RMS(a) = sqrt(1/n Σ_i a_i^2)        (Eq. 4)

with eps added under the root for numerical safety. Llama uses it before every sublayer.
"""

import torch
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """ā = a / sqrt(mean(a^2) + eps) * g (Eq. 4), computed in float32 whatever the input dtype.

    Float32 because mean(a^2) of half-precision activations underflows or overflows easily; the
    result is cast back before the gain, as Hugging Face's ``LlamaRMSNorm`` does.

    Args:
        d_model: n, the normalized (last) dimension.
        eps: added to the mean square (Llama: 1e-5 or 1e-6).

    Shape:
        x: (..., n) -> (..., n).
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # the gain g, initialised to 1

    def forward(self, x: Tensor) -> Tensor:
        a = x.float()
        normed = a * torch.rsqrt(a.square().mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


def make_norm(kind: str, d_model: int, eps: float) -> nn.Module:
    """LayerNorm (GPT-2) or RMSNorm (Llama) over the last dimension."""
    return RMSNorm(d_model, eps) if kind == "rmsnorm" else nn.LayerNorm(d_model, eps=eps)
