"""Light image augmentation for training batches (``data.augmentation``).

- ``"crop"``: pad 2 zero pixels on each side, cut a random 28 x 28 window back out: shifts of up
  to 2 pixels, the classic MNIST-family augmentation.
- ``"crop_flip"``: the crop, then a horizontal flip of half the images (clothes are left-right
  symmetric enough; the labels do not change).

Applied to whole batches of pixel values before normalisation, so the padding is background
(0 = black). Randomness comes from torch's generator (the global one unless ``generator`` is
given): the trainer checkpoints that state, so a resumed run draws the same crops and flips.
Validation and test batches are never augmented.
"""

from typing import Literal

import torch
from torch import Tensor

Augmentation = Literal["none", "crop", "crop_flip"]
CROP_PADDING = 2


def random_crop(images: Tensor, padding: int = CROP_PADDING,
                generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted by its own random offset in [-padding, padding] pixels, zeros filling in.

    Shape:
        images: (B, C, H, W) -> (B, C, H, W).
    """
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    top = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=images.device)
    left = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=images.device)
    rows = top + torch.arange(h, device=images.device)  # (B, H): the window's rows in the padded image
    cols = left + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # advanced indexing on dims 0, 2, 3 puts them first: (B, H, W, C) -> (B, C, H, W)
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image mirrored left-right with probability 1/2. Shape: (B, C, H, W) -> (B, C, H, W)."""
    flip = torch.rand(images.size(0), generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def augment(images: Tensor, kind: Augmentation, generator: torch.Generator | None = None) -> Tensor:
    """``images`` augmented as ``kind`` says; ``"none"`` returns them unchanged (and draws nothing).

    Shape:
        images: (B, C, H, W) pixel values -> (B, C, H, W).
    """
    if kind not in ("none", "crop", "crop_flip"):
        raise ValueError(f"augmentation must be 'none', 'crop' or 'crop_flip', got {kind!r}")
    if kind == "none":
        return images
    images = random_crop(images, CROP_PADDING, generator)
    return random_flip(images, generator) if kind == "crop_flip" else images
