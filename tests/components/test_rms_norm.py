"""RMSNorm (Zhang & Sennrich 2019) against Eq. 4, Hugging Face's LlamaRMSNorm and torch.nn.RMSNorm."""

import pytest
import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from src.components.rms_norm import RMSNorm


def _equation_4(a: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """ā_i = a_i / RMS(a) * g_i, RMS(a) = sqrt(1/n Σ_i a_i^2 + eps)."""
    n = a.size(-1)
    rms = torch.sqrt((a * a).sum(dim=-1, keepdim=True) / n + eps)
    return a / rms * gain


@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 16), (2, 33)])
def test_matches_equation_4_with_gradients(shape):
    torch.manual_seed(0)
    norm = RMSNorm(shape[-1], eps=1e-6)
    nn.init.normal_(norm.weight)
    x = torch.randn(shape, requires_grad=True)
    out, expected = norm(x), _equation_4(x, norm.weight, 1e-6)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, norm.weight], upstream)
    expected_grads = torch.autograd.grad(expected, [x, norm.weight], upstream)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_is_not_layer_norm_it_keeps_the_mean():
    """No re-centring: a constant vector stays constant (LayerNorm would map it to zero)."""
    norm = RMSNorm(4, eps=0.0)
    torch.testing.assert_close(norm(torch.full((1, 4), 3.0)), torch.ones(1, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_hugging_face_llama_and_torch(dtype):
    torch.manual_seed(0)
    ours, llama, native = RMSNorm(24, eps=1e-5), LlamaRMSNorm(24, eps=1e-5), nn.RMSNorm(24, eps=1e-5)
    nn.init.normal_(ours.weight)
    llama.load_state_dict(ours.state_dict())
    native.load_state_dict(ours.state_dict())
    x = (torch.randn(2, 9, 24) * 5 + 1).to(dtype)
    ours, llama = ours.to(dtype), llama.to(dtype)
    torch.testing.assert_close(ours(x), llama(x), atol=0, rtol=0)  # same float32 path, same cast back
    if dtype == torch.float32:
        torch.testing.assert_close(ours(x), native(x), atol=1e-6, rtol=1e-5)
