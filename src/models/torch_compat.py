"""Load the weights of a ``torch.nn.Transformer`` into our model, to show both compute the same maths.

``nn.Transformer`` is only the body of Fig. 1: encoder and decoder stacks, without embeddings or
generator. After ``load_from_torch_transformer(model, reference)``, for embedded inputs ``x``, ``y``:

    memory, _ = model.encoder(x, src_mask)          == reference.encoder(x, src_key_padding_mask=...)
    out, _, _ = model.decoder(y, memory, src_mask)   == reference.decoder(y, memory, tgt_mask=causal, ...)

``tests/models/test_torch_compat.py`` checks outputs and gradients agree to 1e-5 in fp32.

Two differences in conventions are bridged here and in ``masks.to_torch_mask``:

- Masks: ours are True = may attend, PyTorch's True = blocked.
- Final LayerNorm: ``nn.Transformer`` applies one after each stack in both norm placements. Pre-norm
  needs it; post-norm (the paper) does not, so our post-norm default has none. To match a post-norm
  ``nn.Transformer`` exactly, build the model with ``final_norm=True`` (``ModelConfig.final_norm``).
"""

import torch.nn.functional as F
from torch import nn

from src.models.transformer import EncoderDecoderTransformer

# nn.Transformer parameter names -> ours; the others (norm1..3, self_attn.out_proj, norm) are identical.
_RENAMES = (
    ("self_attn.in_proj_weight", "self_attn.in_proj.weight"),
    ("self_attn.in_proj_bias", "self_attn.in_proj.bias"),
    ("multihead_attn.in_proj_weight", "cross_attn.in_proj.weight"),
    ("multihead_attn.in_proj_bias", "cross_attn.in_proj.bias"),
    ("multihead_attn.out_proj", "cross_attn.out_proj"),
    ("linear1", "feed_forward.linear1"),
    ("linear2", "feed_forward.linear2"),
)


def load_from_torch_transformer(model: EncoderDecoderTransformer, reference: nn.Transformer) -> None:
    """Copy the encoder and decoder weights of ``reference`` into ``model`` (in place).

    Embeddings and generator are not part of ``nn.Transformer`` and are left untouched.

    Args:
        model: our model, built with the same sizes, norm placement, activation ("relu" or
            "gelu") and final LayerNorms as ``reference``.
        reference: a ``torch.nn.Transformer`` with ``batch_first=True`` and ``bias=True``.

    Raises:
        ValueError: if the two do not describe the same architecture; the message names the
            mismatched setting with its expected and actual values.
    """
    _check_compatible(model, reference)
    for ours, theirs in ((model.encoder, reference.encoder), (model.decoder, reference.decoder)):
        state = {our_name(name): tensor for name, tensor in theirs.state_dict().items()}
        ours.load_state_dict(state, strict=True)


def our_name(torch_name: str) -> str:
    """Our name of an ``nn.Transformer`` parameter, e.g. ``decoder.layers.0.multihead_attn.in_proj_weight``
    -> ``decoder.layers.0.cross_attn.in_proj.weight``."""
    name = torch_name
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def _check_compatible(model: EncoderDecoderTransformer, reference: nn.Transformer) -> None:
    ref_layer = reference.encoder.layers[0]
    our_layer = model.encoder.layers[0]
    if not reference.batch_first:
        raise ValueError("reference must use batch_first=True (expected True, got False)")
    expected = {
        "d_model": (reference.d_model, model.d_model),
        "d_ff": (ref_layer.linear1.out_features, our_layer.feed_forward.linear2.in_features),
        "norm_first": (ref_layer.norm_first, our_layer.norm_first),
        "activation": (_torch_activation(ref_layer), our_layer.feed_forward.activation),
        "n_encoder_layers": (len(reference.encoder.layers), len(model.encoder.layers)),
        "n_decoder_layers": (len(reference.decoder.layers), len(model.decoder.layers)),
        "n_heads": (ref_layer.self_attn.num_heads, our_layer.self_attn.n_heads),
        "encoder final norm": (reference.encoder.norm is not None, model.encoder.norm is not None),
        "decoder final norm": (reference.decoder.norm is not None, model.decoder.norm is not None),
    }
    for name, (theirs, ours) in expected.items():
        if theirs != ours:
            hint = " (build with ModelConfig(final_norm=True))" if "final norm" in name else ""
            raise ValueError(f"{name} differs: reference has {theirs}, model has {ours}{hint}")


def _torch_activation(layer: nn.TransformerEncoderLayer) -> str:
    if layer.activation is F.relu or isinstance(layer.activation, nn.ReLU):
        return "relu"
    if layer.activation is F.gelu or isinstance(layer.activation, nn.GELU):
        return "gelu"
    return repr(layer.activation)
