import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from src.components.feed_forward import PositionwiseFeedForward


def test_relu_is_equation_2():
    ffn = PositionwiseFeedForward(8, 32, activation="relu")
    x = torch.randn(2, 3, 8)
    expected = (
        torch.clamp(x @ ffn.linear1.weight.T + ffn.linear1.bias, min=0) @ ffn.linear2.weight.T
        + ffn.linear2.bias
    )
    torch.testing.assert_close(ffn(x), expected)


def test_gelu_replaces_the_activation():
    ffn = PositionwiseFeedForward(8, 32, activation="gelu")
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(ffn(x), ffn.linear2(F.gelu(ffn.linear1(x))))


def test_gelu_tanh_is_the_tanh_approximation():
    """Hendrycks & Gimpel 2016, Sec. 2: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's GELU."""
    ffn = PositionwiseFeedForward(8, 32, activation="gelu_tanh")
    x = torch.randn(2, 3, 8)
    h = ffn.linear1(x)
    tanh_gelu = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(ffn(x), ffn.linear2(tanh_gelu))
    assert (ffn(x) - ffn.linear2(F.gelu(h))).abs().max() > 0  # not the erf GELU


def test_swiglu_gates_one_half_with_swish_of_the_other():
    ffn = PositionwiseFeedForward(8, 32, activation="swiglu")
    assert ffn.linear1.out_features == 64 and ffn.linear2.in_features == 32
    x = torch.randn(2, 3, 8)
    w_gate, w_value = ffn.linear1.weight.chunk(2)
    b_gate, b_value = ffn.linear1.bias.chunk(2)
    hidden = F.silu(x @ w_gate.T + b_gate) * (x @ w_value.T + b_value)
    torch.testing.assert_close(ffn(x), ffn.linear2(hidden))


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="'tanh'"):
        PositionwiseFeedForward(8, 32, activation="tanh")


def test_swiglu_without_biases_matches_hugging_face_llama_mlp_with_gradients():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=12, intermediate_size=20, num_attention_heads=2, num_key_value_heads=2,
                         hidden_act="silu", mlp_bias=False)
    llama = LlamaMLP(config)
    ffn = PositionwiseFeedForward(12, 20, activation="swiglu", bias=False)
    assert ffn.linear1.bias is None and ffn.linear2.bias is None
    with torch.no_grad():  # linear1's rows are W (gate) then V (up), Shazeer's Eq. 6
        ffn.linear1.weight.copy_(torch.cat([llama.gate_proj.weight, llama.up_proj.weight]))
        ffn.linear2.weight.copy_(llama.down_proj.weight)
    x = torch.randn(3, 5, 12, requires_grad=True)
    out, expected = ffn(x), llama(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-5)
    weight_grads = torch.autograd.grad(ffn(x), [ffn.linear1.weight, ffn.linear2.weight], upstream)
    expected_grads = torch.autograd.grad(llama(x), [llama.gate_proj.weight, llama.up_proj.weight,
                                                    llama.down_proj.weight], upstream)
    torch.testing.assert_close(weight_grads[0], torch.cat(expected_grads[:2]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight_grads[1], expected_grads[2], atol=1e-6, rtol=1e-5)
