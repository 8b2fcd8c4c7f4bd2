"""PatchEmbedding is Eq. 1's x_p E: a linear map of each flattened patch, in row-major patch order."""

import pytest
import torch

from src.components.patch_embedding import PatchEmbedding


def test_shape_is_one_vector_per_patch():
    embed = PatchEmbedding(in_channels=3, d_model=16, patch_size=4)
    assert embed(torch.randn(2, 3, 28, 28)).shape == (2, 49, 16)


def test_equals_a_linear_layer_on_flattened_patches():
    torch.manual_seed(0)
    b, c, side, p, d = 2, 3, 12, 4, 8
    embed = PatchEmbedding(c, d, p)
    images = torch.randn(b, c, side, side)
    # (B, C, H, W) -> (B, C, H/P, P, W/P, P) -> (B, H/P, W/P, C, P, P) -> (B, N, C P P)
    patches = images.view(b, c, side // p, p, side // p, p).permute(0, 2, 4, 1, 3, 5).reshape(
        b, -1, c * p * p)
    weight = embed.projection.weight.view(d, -1)  # (D, C, P, P) -> (D, C P P): the rows of E^T
    expected = patches @ weight.T + embed.projection.bias
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)


def test_patch_i_depends_only_on_its_own_pixels():
    embed = PatchEmbedding(1, 8, 4)
    images = torch.randn(1, 1, 8, 8)
    changed = images.clone()
    changed[0, 0, 4:, 4:] += 1.0  # the last of the 2 x 2 patches, row-major
    diff = (embed(changed) - embed(images)).abs().sum(-1)[0]
    assert diff[:3].max() == 0 and diff[3] > 0


def test_image_side_not_divisible_is_an_error():
    with pytest.raises(ValueError, match="divisible by 4"):
        PatchEmbedding(1, 8, 4)(torch.randn(1, 1, 10, 10))
