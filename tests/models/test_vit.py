"""The Vision Transformer: parity with Hugging Face's ViT, input checks, rollout, the builder."""

import pytest
import torch

from src.config.model import ModelConfig
from src.models.builders import build
from src.models.hf_weights import vit_state_dict
from src.models.vit import VisionTransformer, attention_rollout, build_vit

# The settings that make our ViT and transformers' ViTForImageClassification the same function:
# pre-norm (norm_first), exact GELU (transformers' "gelu" is the erf form, as F.gelu), the same
# LayerNorm epsilon, no dropout; our (3C, C) in_proj is transformers' query, key, value stacked.
TINY = ModelConfig(family="vit", image_size=28, patch_size=4, in_channels=1, d_model=32, n_heads=4,
                   n_encoder_layers=2, d_ff=64, dropout=0.0, attention_dropout=0.0, activation="gelu",
                   norm_first=True, layer_norm_eps=1e-12)


def hf_vit():
    import transformers  # pinned in requirements.txt: a missing install is a failure, not a skip
    config = transformers.ViTConfig(image_size=28, patch_size=4, num_channels=1, hidden_size=32,
                                    num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=10,
                                    hidden_act="gelu",
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    layer_norm_eps=1e-12)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():  # transformers zero-initialises these; random values make the test meaningful
        for p in (model.vit.embeddings.cls_token, model.vit.embeddings.position_embeddings,
                  model.classifier.bias):
            p.normal_()
    return model


def copy_hf_weights(hf, ours: VisionTransformer) -> None:
    """transformers' parameters onto ours, through the mapping ``model.init_from`` uses."""
    state, used = vit_state_dict(hf.state_dict())
    ours.load_state_dict(state, strict=True)
    assert used == set(hf.state_dict())  # a ViTForImageClassification has nothing the mapping leaves out


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_logits_match_transformers_vit(backend):
    hf = hf_vit()
    ours = build_vit(TINY.model_copy(update={"attention_backend": backend}), n_classes=10).eval()
    copy_hf_weights(hf, ours)
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = hf(pixel_values=images).logits
        torch.testing.assert_close(ours(images), expected, rtol=0, atol=1e-5)


def test_attention_weights_match_transformers_vit():
    hf = hf_vit()
    hf.config._attn_implementation = "eager"  # the eager path returns weights
    ours = build_vit(TINY, n_classes=10).eval()
    copy_hf_weights(hf, ours)
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        theirs = hf(pixel_values=images, output_attentions=True).attentions
        logits, weights = ours(images, return_attention=True)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 50, 50)
    for mine, expected in zip(weights, theirs):
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-5)


def test_the_family_builds_through_builders_and_starts_uniform():
    model = build(TINY, n_classes=10)
    assert isinstance(model, VisionTransformer)
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and torch.all(logits == 0)  # zero-initialised head (Sec. 3.2)


@pytest.mark.parametrize("images, message", [
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "dtype torch.uint8"),
    (torch.zeros(2, 3, 28, 28), r"shape \(2, 3, 28, 28\)"),
    (torch.zeros(1, 28, 28), r"shape \(1, 28, 28\)"),
    ([[0.0]], "got list"),
])
def test_bad_input_is_a_clear_error(images, message):
    with pytest.raises(ValueError, match=message) as info:
        build_vit(TINY, n_classes=10)(images)
    assert "float tensor of shape (B, 1, 28, 28)" in str(info.value)  # expected, next to the actual value


def test_rollout_of_one_layer_is_half_attention_half_identity():
    weights = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])[None]  # (1, H=2, 2, 2)
    # heads average to uniform 0.5; + I -> [[1.5, .5], [.5, 1.5]]; rows / 2
    torch.testing.assert_close(attention_rollout([weights]), torch.tensor([[[0.75, 0.25], [0.25, 0.75]]]))


def test_rollout_multiplies_through_layers_later_on_the_left():
    first = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # every token reads token 0
    second = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # every token reads token 1
    a1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])  # (first + I) / 2
    a2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])  # (second + I) / 2
    rolled = attention_rollout([first, second])
    torch.testing.assert_close(rolled[0], a2 @ a1)
    torch.testing.assert_close(rolled.sum(-1), torch.ones(1, 2))


def test_rollout_needs_a_layer():
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
