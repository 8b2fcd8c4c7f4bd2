import math

import pytest
import torch

from src.components.positional_encoding import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)


@pytest.mark.parametrize("d_model", [16, 15])
def test_sinusoidal_values_equal_the_papers_formula(d_model):
    table = sinusoidal_table(50, d_model)
    for pos in (0, 1, 7, 49):
        for i in range(d_model):
            angle = pos / 10000 ** ((i - i % 2) / d_model)  # PE(pos, 2i) = sin(pos / 10000^(2i/d_model))
            expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert table[pos, i].item() == pytest.approx(expected, abs=1e-6)


def test_sinusoidal_encoding_adds_the_rows_from_start():
    encoding = SinusoidalPositionalEncoding(8, max_positions=10)
    x = torch.zeros(2, 3, 8)
    torch.testing.assert_close(encoding(x, start=4), sinusoidal_table(10, 8)[4:7].expand(2, 3, 8))
    assert not list(encoding.parameters()) and "table" not in encoding.state_dict()


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_sequence_longer_than_max_positions_names_both_numbers(cls):
    encoding = cls(8, max_positions=10)
    encoding(torch.zeros(1, 10, 8))
    with pytest.raises(ValueError, match=r"max_positions=10.*length=11"):
        encoding(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match=r"start=9, length=2"):
        encoding(torch.zeros(1, 2, 8), start=9)


def test_learned_encoding_adds_one_trainable_vector_per_position():
    encoding = LearnedPositionalEncoding(4, max_positions=6)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(encoding(x, start=2), x + encoding.table.weight[2:5])
    encoding(x).sum().backward()
    assert encoding.table.weight.grad[:3].abs().sum() > 0 and encoding.table.weight.grad[3:].abs().sum() == 0
