"""Our body computes exactly torch.nn.Transformer's maths: same weights, same outputs and gradients."""

import pytest
import torch
from torch import nn

from src.components.masks import causal_mask, padding_mask, to_torch_mask
from src.models.torch_compat import load_from_torch_transformer, our_name
from src.models.transformer import build_model

B, S, T = 3, 7, 6


def _pair(tiny_config, norm_first: bool, activation: str = "relu"):
    torch.manual_seed(0)
    cfg = tiny_config.model_copy(
        update={"norm_first": norm_first, "final_norm": True, "activation": activation}
    )
    model = build_model(cfg, 20, 20, pad_id=0)
    reference = nn.Transformer(
        cfg.d_model,
        cfg.n_heads,
        cfg.n_encoder_layers,
        cfg.n_decoder_layers,
        cfg.d_ff,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    )
    for name, p in reference.named_parameters():  # non-trivial norms and biases, so a mix-up would show
        if p.dim() == 1:
            nn.init.normal_(p, mean=1.0 if "norm" in name and name.endswith("weight") else 0.0, std=0.2)
    load_from_torch_transformer(model, reference)
    return model, reference


def _masks():
    src = torch.ones(B, S, dtype=torch.long)
    src[0, 5:], src[2, 2:] = 0, 0
    tgt = torch.ones(B, T, dtype=torch.long)
    tgt[1, 4:] = 0
    return padding_mask(src, 0), padding_mask(tgt, 0)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("with_target_padding", [False, True])
def test_body_matches_torch_transformer_outputs_and_gradients(
    tiny_config, norm_first, activation, with_target_padding
):
    model, reference = _pair(tiny_config, norm_first, activation)
    src_mask, tgt_mask = _masks()
    x = torch.randn(B, S, tiny_config.d_model, requires_grad=True)
    y = torch.randn(B, T, tiny_config.d_model, requires_grad=True)
    probe = torch.randn(B, T, tiny_config.d_model)

    memory, _ = model.encoder(x, src_mask)
    ours, _, _ = model.decoder(y, memory, src_mask, tgt_mask=tgt_mask if with_target_padding else None)
    theirs = reference(
        x,
        y,
        src_key_padding_mask=to_torch_mask(src_mask),
        memory_key_padding_mask=to_torch_mask(src_mask),
        tgt_mask=to_torch_mask(causal_mask(T, T)),
        tgt_key_padding_mask=to_torch_mask(tgt_mask) if with_target_padding else None,
    )
    assert (ours - theirs).abs().max() <= 1e-5

    their_names, their_params = zip(*reference.named_parameters(), strict=True)
    our_params = [model.get_parameter(our_name(name)) for name in their_names]
    our_grads = torch.autograd.grad((ours * probe).sum(), [x, y, *our_params])
    their_grads = torch.autograd.grad((theirs * probe).sum(), [x, y, *their_params])
    for name, ours_g, theirs_g in zip(["x", "y", *their_names], our_grads, their_grads, strict=True):
        assert (ours_g - theirs_g).abs().max() <= 1e-5, name


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_every_parameter_is_loaded(tiny_config, norm_first):
    model, reference = _pair(tiny_config, norm_first)
    for name, theirs in reference.named_parameters():
        assert torch.equal(model.get_parameter(our_name(name)), theirs), name
    body = sum(p.numel() for p in (*model.encoder.parameters(), *model.decoder.parameters()))
    assert body == sum(p.numel() for p in reference.parameters())


def test_post_norm_model_without_final_norm_explains_the_fix(tiny_config):
    model = build_model(tiny_config, 20, 20, pad_id=0)  # post-norm default: no final LayerNorm
    reference = nn.Transformer(32, 4, 2, 2, 64, batch_first=True)
    with pytest.raises(
        ValueError, match=r"final norm differs: reference has True, model has False.*final_norm=True"
    ):
        load_from_torch_transformer(model, reference)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_mismatched_sizes_are_named(tiny_config):
    model = build_model(tiny_config.model_copy(update={"final_norm": True}), 20, 20, pad_id=0)
    with pytest.raises(ValueError, match=r"d_ff differs: reference has 128, model has 64"):
        load_from_torch_transformer(model, nn.Transformer(32, 4, 2, 2, 128, batch_first=True))
    with pytest.raises(ValueError, match=r"norm_first differs: reference has True, model has False"):
        load_from_torch_transformer(model, nn.Transformer(32, 4, 2, 2, 64, batch_first=True, norm_first=True))
