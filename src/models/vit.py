"""The Vision Transformer of Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (Sec. 3.1, Fig. 1).

Reading order: ``ViTEmbeddings`` (patches -> vectors, a learned [class] token in front, learned
position embeddings added; Eq. 1) -> ``Encoder`` (the pre-norm layers of the translation model,
``src/models/layers.py``; Eq. 2-3) -> the final LayerNorm and a linear head on the [class]
token's state (Eq. 4). No masks: every image has the same N + 1 tokens.

``attention_rollout`` (Abnar & Zuidema 2020) traces how much each input token reaches the
[class] token through all layers, from the per-layer weights ``forward`` can return.
"""

import torch
from torch import Tensor, nn

from src.components.patch_embedding import PatchEmbedding
from src.config.model import ModelConfig
from src.models.layers import Encoder
from src.models.transformer import build_encoder, init_weights


class ViTEmbeddings(nn.Module):
    """z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos (Eq. 1), then dropout (Appendix B.1).

    Args:
        image_size: square image side in pixels.
        patch_size: patch side P.
        in_channels: image channels C_in.
        d_model: model width D.
        dropout: dropout after adding the position embeddings.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, d_model: int,
                 dropout: float) -> None:
        super().__init__()
        self.n_patches = (image_size // patch_size) ** 2
        self.patch_embedding = PatchEmbedding(in_channels, d_model, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        # learned 1-D positions: the paper found 2-D-aware ones no better (Sec. 3.1, Appendix D.4)
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + self.n_patches, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, images: Tensor) -> Tensor:
        """Shape: images (B, C_in, H, W) -> (B, 1 + N, D)."""
        patches = self.patch_embedding(images)  # (B, N, D)
        cls = self.cls_token.expand(patches.size(0), -1, -1)  # (1, 1, D) -> (B, 1, D)
        return self.dropout(torch.cat([cls, patches], dim=1) + self.position_embedding)


class VisionTransformer(nn.Module):
    """Embeddings, the encoder stack, and a linear head on the final [class] state (Eq. 4).

    Parameter names group by ``embeddings``, ``encoder.layers.{i}`` and ``head``, like the other
    families, so gradient-norm monitoring reads the same way.

    Args:
        embeddings: patch, [class] and position embeddings.
        encoder: encoder stack; with pre-norm its final LayerNorm is Eq. 4's LN.
        head: (D, K) linear layer to the class logits.
        image_size: square image side the model was built for.
        in_channels: image channels the model was built for.
    """

    def __init__(self, embeddings: ViTEmbeddings, encoder: Encoder, head: nn.Linear, image_size: int,
                 in_channels: int) -> None:
        super().__init__()
        self.embeddings, self.encoder, self.head = embeddings, encoder, head
        self.image_size, self.in_channels = image_size, in_channels

    def forward(self, images: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Class logits of each image; with ``return_attention`` also each layer's weights.

        Args:
            images: normalised float images.
            return_attention: also return per-layer attention weights (computed on the math path).

        Shape:
            images: (B, C_in, H, W) -> logits (B, K); weights: L tensors (B, H_heads, 1 + N, 1 + N).

        Raises:
            ValueError: if ``images`` is not a float (B, in_channels, image_size, image_size) tensor.
        """
        self.check_images(images)
        hidden, weights = self.encoder(self.embeddings(images), None, need_weights=return_attention)
        logits = self.head(hidden[:, 0])  # (B, 1 + N, D) -> the [class] state (B, D) -> (B, K)
        return (logits, weights) if return_attention else logits

    def check_images(self, images: object) -> None:
        expected = (f"images must be a float tensor of shape (B, {self.in_channels}, {self.image_size}, "
                    f"{self.image_size})")
        if not isinstance(images, Tensor):
            raise ValueError(f"{expected}, got {type(images).__name__}")
        if not images.is_floating_point():
            raise ValueError(f"{expected}, got dtype {images.dtype} (normalise uint8 pixels first)")
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.in_channels, self.image_size,
                                                           self.image_size):
            raise ValueError(f"{expected}, got shape {tuple(images.shape)}")

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def attention_rollout(weights: list[Tensor]) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    How much each input token reaches each token's final state through all the layers.

    Per layer: average the heads, add the identity for the residual connection and renormalise
    rows, A_l = 0.5 W_l + 0.5 I; then multiply through the layers, R = A_L ... A_2 A_1.

    Args:
        weights: one attention tensor per layer, first layer first.

    Shape:
        weights: L tensors (B, H, T, T) -> (B, T, T); row i sums to 1 over the input tokens.
    """
    if not weights:
        raise ValueError("attention rollout needs the weights of at least one layer, got none")
    rollout = None
    for layer in weights:
        mixed = layer.float().mean(dim=1)  # (B, H, T, T) -> (B, T, T)
        mixed = mixed + torch.eye(mixed.size(-1), device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout  # later layers multiply from the left
    return rollout


def init_vit_weights(model: VisionTransformer, d_model: int) -> None:
    """Xavier linear layers (``init_weights``), truncated-normal [class] and position embeddings with
    std 0.02, the patch projection as a linear layer on flattened patches, and a zero head.

    The zero head starts every class at the same logit, as the paper's fine-tuning head (Sec. 3.2).
    """
    init_weights(model, d_model)
    nn.init.trunc_normal_(model.embeddings.cls_token, std=0.02)
    nn.init.trunc_normal_(model.embeddings.position_embedding, std=0.02)
    conv = model.embeddings.patch_embedding.projection
    nn.init.xavier_uniform_(conv.weight.view(conv.out_channels, -1))  # (D, C_in, P, P) as (D, C_in P^2)
    nn.init.zeros_(conv.bias)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)


def build_vit(cfg: ModelConfig, n_classes: int) -> VisionTransformer:
    """A ViT from ``cfg``: image_size, patch_size, in_channels and the encoder keys (n_encoder_layers deep).

    Args:
        cfg: model hyperparameters; ViT is pre-norm (``norm_first: true``) in the paper.
        n_classes: number of classes K.
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
    embeddings = ViTEmbeddings(cfg.image_size, cfg.patch_size, cfg.in_channels, cfg.d_model, cfg.dropout)
    model = VisionTransformer(embeddings, build_encoder(cfg), nn.Linear(cfg.d_model, n_classes),
                              cfg.image_size, cfg.in_channels)
    init_vit_weights(model, cfg.d_model)
    return model
