"""Augmentation keeps shapes, only shifts or mirrors, is fixed by the seed, and 'none' is the identity."""

import pytest
import torch
import torch.nn.functional as F

from src.data.augmentation import CROP_PADDING, augment, random_crop, random_flip


def images(b=16):
    return torch.rand(b, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def shifts(image):
    """Every 28 x 28 window of the zero-padded image: what a crop may return."""
    padded = F.pad(image, (CROP_PADDING,) * 4)
    size = 2 * CROP_PADDING + 1
    return [padded[:, dy: dy + 28, dx: dx + 28] for dy in range(size) for dx in range(size)]


@pytest.mark.parametrize("kind", ["none", "crop", "crop_flip"])
def test_shape_and_dtype_are_kept(kind):
    out = augment(images(), kind)
    assert out.shape == (16, 1, 28, 28) and out.dtype == torch.float32


def test_crop_is_a_shift_of_at_most_two_pixels():
    x = images()
    out = random_crop(x, generator=torch.Generator().manual_seed(0))
    for original, cropped in zip(x, out):
        assert any(torch.equal(cropped, window) for window in shifts(original))
    assert not torch.equal(out, x)  # 16 images: some shift away from the centre


def test_flip_mirrors_about_half_of_the_images():
    x = images(200)
    out = random_flip(x, generator=torch.Generator().manual_seed(0))
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert all(m or torch.equal(o, i) for m, o, i in zip(mirrored, out, x))
    assert 60 < sum(mirrored) < 140


def test_the_same_seed_gives_the_same_batch_and_global_rng_drives_it():
    x = images()
    a = augment(x, "crop_flip", torch.Generator().manual_seed(3))
    assert torch.equal(a, augment(x, "crop_flip", torch.Generator().manual_seed(3)))
    torch.manual_seed(5)
    b = augment(x, "crop_flip")
    torch.manual_seed(5)
    assert torch.equal(b, augment(x, "crop_flip"))  # the trainer checkpoints this state: resume is exact


def test_none_is_the_identity_and_draws_nothing():
    x = images()
    state = torch.get_rng_state()
    assert augment(x, "none") is x
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="got 'rotate'"):
        augment(images(), "rotate")
