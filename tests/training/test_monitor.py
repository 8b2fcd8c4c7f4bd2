import pytest
import torch
from torch import nn

from src.training.monitor import UpdateRatio, grouped_grad_norms, parameter_group, parameter_norm


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("encoder.layers.0.self_attn.w_qkv.weight", "encoder.layers.0"),
        ("decoder.layers.12.cross_attn.w_o.bias", "decoder.layers.12"),
        ("embedding.weight", "embedding"),
        ("generator.bias", "generator"),
    ],
)
def test_parameter_groups(name, group):
    assert parameter_group(name) == group


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
        self.head = nn.Linear(3, 1)


def test_group_norms_compose_to_the_total():
    torch.manual_seed(0)
    model = nn.Module()
    model.encoder = _Two()
    x = torch.randn(5, 3)
    out = model.encoder.head(model.encoder.layers[1](model.encoder.layers[0](x))).sum()
    out.backward()
    norms = grouped_grad_norms(model)
    assert set(norms) == {"encoder.layers.0", "encoder.layers.1", "encoder"}
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())).item()
    assert sum(v**2 for v in norms.values()) ** 0.5 == pytest.approx(total, rel=1e-6)


def test_update_ratio_measures_the_step():
    layer = nn.Linear(4, 4)
    ratio = UpdateRatio()
    ratio.snapshot(layer)
    before = parameter_norm(layer)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(1.01)  # every parameter moves by 1% of itself
    assert ratio.ratio(layer) == pytest.approx(0.01, rel=1e-4)
    assert parameter_norm(layer) == pytest.approx(before * 1.01, rel=1e-5)
    assert ratio.ratio(layer) is None  # one snapshot, one ratio
