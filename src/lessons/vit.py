"""Vision Transformer: an image as a sequence of patches, and where the [class] token looks.

Uses ``PatchEmbedding`` (``src/components/patch_embedding.py``), the ``VisionTransformer`` built by
``src/models/builders.py`` and its ``attention_rollout``, on small synthetic 28 x 28 images (a bar,
a square or a cross on a noisy background, drawn here), so no dataset is needed.
"""

from functools import lru_cache

import torch
import torch.nn.functional as F

from src.components.patch_embedding import PatchEmbedding
from src.config.model import ModelConfig
from src.lessons import toy
from src.lessons.plots import curves
from src.lessons.step import Knob, Step, StepResult
from src.models.builders import build
from src.models.vit import attention_rollout
from src.training.loss import translation_loss
from src.visualization.figure import new_figure

SIDE, PATCH, TRAIN_STEPS = 28, 7, 150
CLASSES = ("horizontal bar", "vertical bar", "square", "cross")


def shapes(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images of one shape each at a random place, their labels, and the shape's pixel mask.

    Shape: images (B, 1, 28, 28) normalised to about zero mean; labels (B,); masks (B, 28, 28) boolean.
    """
    labels = torch.randint(0, len(CLASSES), (batch,), generator=generator)
    masks = torch.zeros(batch, SIDE, SIDE, dtype=torch.bool)
    corners = torch.randint(2, SIDE - 12, (batch, 2), generator=generator)
    for i, (label, (y, x)) in enumerate(zip(labels.tolist(), corners.tolist(), strict=True)):
        if label == 0:
            masks[i, y + 4 : y + 7, x : x + 10] = True
        elif label == 1:
            masks[i, y : y + 10, x + 4 : x + 7] = True
        elif label == 2:
            masks[i, y + 1 : y + 8, x + 1 : x + 8] = True
        else:
            masks[i, y + 4 : y + 6, x : x + 10] = True
            masks[i, y : y + 10, x + 4 : x + 6] = True
    noise = 0.3 * torch.randn(batch, SIDE, SIDE, generator=generator)
    images = (masks.float() + noise - 0.15)[:, None]  # (B, H, W) -> (B, 1, H, W)
    return images, labels, masks


def patches(patch_size: int) -> StepResult:
    """Cutting an image into patches: N = (28/P)^2 tokens; the strided convolution is exactly a matmul per
    patch."""
    if SIDE % patch_size:
        raise ValueError(f"patch_size must divide {SIDE} (1, 2, 4, 7, 14, 28), got {patch_size}")
    torch.manual_seed(0)
    embedding = PatchEmbedding(1, 32, patch_size)
    images, labels, _ = shapes(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = embedding(images)  # (B, N, D)
        # (B, 1, H, W) -> (B, P*P, N) -> (B, N, P*P): each column one flattened patch, row-major
        flat = F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)
        by_matmul = flat @ embedding.projection.weight.view(32, -1).T + embedding.projection.bias
    error = float((tokens - by_matmul).abs().max())
    n = (SIDE // patch_size) ** 2
    figure = new_figure(4.0, 4.0)
    ax = figure.subplots()
    ax.imshow(images[0, 0].numpy(), cmap="gray")
    for line in range(0, SIDE + 1, patch_size):
        ax.axhline(line - 0.5, color="tab:red", lw=0.6)
        ax.axvline(line - 0.5, color="tab:red", lw=0.6)
    ax.set_title(f"{CLASSES[int(labels[0])]}: {n} patches of {patch_size}x{patch_size}", fontsize=9)
    return StepResult(
        outcome=f"patch {patch_size}: {n} tokens of {patch_size * patch_size} pixels each (+1 [class] "
                f"token); conv against flatten-and-matmul: max difference {error:.1e}",
        metrics={"n_patches": float(n), "conv_matmul_difference": error},
        columns=("patch size", "tokens", "pixels per token", "attention scores per layer and head"),
        rows=[[p, (SIDE // p) ** 2, p * p, ((SIDE // p) ** 2 + 1) ** 2] for p in sorted({4, 7, 14,
                                                                                         patch_size})],
        figures={"patches": figure})


@lru_cache(maxsize=2)
def trained(seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    cfg = ModelConfig(family="vit", image_size=SIDE, patch_size=PATCH, d_model=32, n_heads=2,
                      n_encoder_layers=2,
                      d_ff=64, dropout=0.0, norm_first=True, attention_backend="math")
    model = build(cfg, n_classes=len(CLASSES))

    def loss_of_batch(m: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        images, labels, _ = shapes(32, generator)
        return translation_loss(m(images)[:, None], labels[:, None], pad_id=-100)[0]  # (B, K) -> (B, 1, K)

    log = toy.train(model, loss_of_batch, steps=TRAIN_STEPS, lr=1e-2, seed=seed, warmup_steps=20,
                    series="loss")
    return model, log.losses


def rollout(image: int) -> StepResult:
    """Train a tiny ViT; the [class] token's attention rollout concentrates on the patches holding the
    shape."""
    model, losses = trained()
    images, labels, masks = shapes(128, torch.Generator().manual_seed(9))
    with torch.no_grad():
        logits, weights = model(images, return_attention=True)
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    from_class = attention_rollout(weights)[:, 0, 1:]  # (B, 1+N, 1+N) -> [class] row, patches only: (B, N)
    grid = SIDE // PATCH
    # (B, 28, 28) -> (B, 4, 7, 4, 7) -> does each patch hold a shape pixel: (B, N)
    on_shape = masks.view(-1, grid, PATCH, grid, PATCH).any(4).any(2).flatten(1)
    share = from_class / from_class.sum(-1, keepdim=True)
    mass_on_shape = float((share * on_shape).sum(-1).mean())
    area = float(on_shape.float().mean())
    figure = new_figure(7.0, 3.5)
    left, right = figure.subplots(1, 2)
    left.imshow(images[image, 0].numpy(), cmap="gray")
    left.set_title(f"{CLASSES[int(labels[image])]} (predicted {CLASSES[int(logits[image].argmax())]})",
                   fontsize=9)
    right.imshow(share[image].view(grid, grid).numpy(), cmap="viridis")
    right.set_title("[class] attention rollout over patches", fontsize=9)
    return StepResult(
        outcome=f"accuracy {accuracy:.0%} after {len(losses)} steps; the [class] token's rollout puts "
                f"{mass_on_shape:.0%} of its patch attention on the patches holding the shape, which cover "
                f"{area:.0%} of them",
        metrics={"accuracy": accuracy, "rollout_on_shape": mass_on_shape, "shape_area": area},
        columns=("image", "class", "predicted", "rollout on shape patches"),
        rows=[[i, CLASSES[int(labels[i])], CLASSES[int(logits[i].argmax())],
               float((share[i] * on_shape[i]).sum())]
              for i in range(8)],
        figures={"rollout": figure, "loss": curves({"vit": losses}, "loss", "ViT training loss")},
        curves={"loss": losses})


STEPS = [
    Step("patches", """
A Vision Transformer cuts the image into P x P patches, flattens each and projects it to d_model
(Dosovitskiy et al. 2021, Eq. 1): an image becomes a sentence of (28/P)^2 words, plus a learned
[class] token. A convolution with kernel = stride = P computes exactly that projection. Smaller
patches mean more tokens and quadratically more attention scores.""", patches,
         Knob("patch_size", 7, "1, 2, 4, 7, 14 or 28", low=1, high=28)),
    Step("where the [class] token looks", """
A 2-layer ViT is trained for a few seconds to tell a horizontal bar, a vertical bar, a square and
a cross apart. Attention rollout (Abnar & Zuidema 2020) multiplies the layers' attention (plus
the residual) to trace how much each patch reaches the [class] token: it concentrates on the
patches that hold the shape.""", rollout, Knob("image", 0, "which test image to draw, 0-7", low=0, high=7)),
]
