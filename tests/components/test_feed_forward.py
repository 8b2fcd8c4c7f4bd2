import pytest
import torch
import torch.nn.functional as F

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
