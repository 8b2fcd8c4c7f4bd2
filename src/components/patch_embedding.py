"""Patch embedding of the Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words", Eq. 1).

The image x (C_in, H, W) is cut into N = HW / P^2 patches of P x P pixels, each flattened and
projected by one matrix E (P^2 C_in, D). A Conv2d with kernel = stride = P computes exactly
this: each output pixel is the dot product of one non-overlapping patch with each filter, and
the filters, flattened, are the columns of E. One kernel call instead of unfold + matmul.
"""

from torch import Tensor, nn


class PatchEmbedding(nn.Module):
    """x_p^i E for every patch i of the image (Eq. 1), as a strided convolution.

    Args:
        in_channels: image channels C_in (1 for Fashion-MNIST).
        d_model: model width D (the paper's latent size).
        patch_size: patch side P; the image side must be a multiple of it.

    Shape:
        images: (B, C_in, H, W) -> (B, N, D) with N = (H / P) * (W / P), patches in row-major order.
    """

    def __init__(self, in_channels: int, d_model: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image of {height}x{width} pixels does not split into {self.patch_size}x"
                             f"{self.patch_size} patches "
                             f"(expected both sides divisible by {self.patch_size})")
        # (B, C_in, H, W) -> (B, D, H/P, W/P) -> (B, D, N) -> (B, N, D)
        return self.projection(images).flatten(2).transpose(1, 2)
