"""Checks on the token-id arguments of the model's and the decoders' public entry points.

Only types, shapes and dtypes are checked, all known on the host: a range check on the ids would
need ``.item()``, a device sync on every decoding step.
"""

import torch
from torch import Tensor

TOKEN_DTYPES = (torch.int64, torch.int32)  # the index dtypes nn.Embedding accepts


def check_token_ids(name: str, tokens: object) -> None:
    """Raise ValueError unless ``tokens`` is a (B, L) integer tensor with L >= 1.

    Args:
        name: the argument's name, for the message ("src", "tgt").
        tokens: the argument as passed.
    """
    expected = f"{name} must be a 2-D (batch, length) tensor of integer token ids"
    if not isinstance(tokens, Tensor):
        raise ValueError(f"{expected}, got {type(tokens).__name__}")
    if tokens.ndim != 2 or tokens.dtype not in TOKEN_DTYPES or tokens.size(1) == 0:
        raise ValueError(
            f"{expected} (dtype torch.int64 or torch.int32, length >= 1), "
            f"got shape {tuple(tokens.shape)} dtype {tokens.dtype}"
        )


def check_same_batch(src: Tensor, tgt: Tensor) -> None:
    """Raise ValueError unless ``src`` (B, S) and ``tgt`` (B, T) have the same batch size B."""
    if src.size(0) != tgt.size(0):
        raise ValueError(
            f"src and tgt must have the same batch size, got src shape {tuple(src.shape)} "
            f"and tgt shape {tuple(tgt.shape)}"
        )
