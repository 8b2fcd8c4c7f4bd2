"""Fine-tuning options: which weights train (all, all but the embeddings, or LoRA's adapters and the head)
and at which rate (one for all, or decaying layer by layer); the trainer's optimizer is built from here.

- Full fine-tuning trains every weight. ``training.layer_lr_decay`` (ELECTRA, Clark et al. 2020, App. A;
  BEiT, Bao et al. 2022, Sec. 2.5) gives the lower layers, which hold the more general features, smaller
  steps: block i of L (0 = the lowest) at lr * decay^(L - i), the embeddings at lr * decay^(L + 1), the
  head and the final norm at lr (``layer_depth``). ``training.freeze_embeddings`` keeps the embedding
  tables as pretrained; a decoder's output layer tied to its token table stays with it.
- LoRA (``training.finetune: lora``, Hu et al. 2021, ``src/components/lora.py``) freezes every pretrained
  weight and adds low-rank adapters to the attention projections of every attention layer; they train,
  with the task's new head (a classifier's pooler and output layer, a ViT's head), and nothing else.

A LoRA checkpoint holds the frozen weights under their usual names, the adapters beside them and the
record ``lora`` (rank, alpha, targets) that says it is one; ``model_weights`` merges the adapters into the
weights for every reader that wants a plain model (evaluate, predict, export, serve, init_from).
"""

import re
from typing import Any

from loguru import logger
from torch import Tensor, nn

from src.components.attention import MultiHeadAttention
from src.components.lora import LoRALinear, merge_lora_state
from src.config.base import ResumeError
from src.config.training import TrainingConfig

# parameter-name prefixes of the embedding tables (positions, token types and a ViT's patches included)
EMBEDDINGS = ("embeddings.", "token_embedding.", "positional.")
# a family's task head, new on a pretrained body: it trains under LoRA as well (the LM families have none:
# their output layer is the pretrained token table)
HEADS = {"encoder_classifier": ("head.",), "vit": ("head.",)}
# encoder.layers.3.self_attn... -> 3; an LSTM's rnn.rnn.weight_ih_l1_reverse -> 1
_LAYER = re.compile(r"^(?:encoder|decoder)\.layers\.(\d+)\.|_l(\d+)(?:_reverse)?$")


def prepare_model(model: nn.Module, training: TrainingConfig, family: str) -> None:
    """Add LoRA's adapters or freeze the embeddings, as ``training`` asks (in place, before the optimizer)."""
    if training.finetune == "lora":
        adapted = add_lora(model, training.lora_rank, training.lora_alpha, training.lora_dropout,
                           training.lora_targets)
        heads = HEADS.get(family, ())
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(".lora_" in name or name.startswith(heads))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        logger.info(f"LoRA r={training.lora_rank}, alpha={training.lora_alpha:g} on "
                    f"{'+'.join(training.lora_targets)} of {adapted} attention layers: {trainable:,} of "
                    f"{total:,} parameters train ({100 * trainable / total:.2f}%)")
    elif training.freeze_embeddings:
        for name, parameter in model.named_parameters():
            if name.startswith(EMBEDDINGS):
                parameter.requires_grad_(False)


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> int:
    """Put a ``LoRALinear`` in place of the targeted projections of every ``MultiHeadAttention`` of
    ``model`` (q, k, v: row blocks of ``in_proj``; o: ``out_proj``); the number of attention layers adapted.
    A Longformer's separate global projections are left as they are."""
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not attentions:
        raise ValueError(f"LoRA adapts attention projections; this {type(model).__name__} has none")
    fused = tuple(t for t in targets if t in ("q", "k", "v"))
    for attention in attentions:
        if fused:
            attention.in_proj = LoRALinear(attention.in_proj, fused, rank, alpha, dropout)
        if "o" in targets:
            attention.out_proj = LoRALinear(attention.out_proj, ("o",), rank, alpha, dropout)
    return len(attentions)


def lora_record(training: TrainingConfig) -> dict[str, Any]:
    """What a LoRA checkpoint says about itself (the key ``lora``); nothing for full fine-tuning."""
    if training.finetune != "lora":
        return {}
    return {"lora": {"rank": training.lora_rank, "alpha": training.lora_alpha,
                     "targets": list(training.lora_targets)}}


def model_weights(state: dict[str, Any]) -> dict[str, Tensor]:
    """A checkpoint's model tensors for a plain model: a LoRA checkpoint's adapters merged into the weights
    (W + alpha/r B A), any other checkpoint's as they are."""
    lora = state.get("lora")
    if not lora:
        return state["model"]
    return merge_lora_state(state["model"], float(lora["alpha"]), int(lora["rank"]))


def layer_depth(name: str, n_layers: int) -> int:
    """0 for the embeddings, i + 1 for block i, ``n_layers + 1`` for what sits above (head, final norm)."""
    if name.startswith(EMBEDDINGS):
        return 0
    match = _LAYER.search(name)
    if match is None:
        return n_layers + 1
    return int(match.group(1) or match.group(2)) + 1


def count_layers(model: nn.Module) -> int:
    """L, the number of blocks of ``model``'s stack (of an RNN's layers), read from its parameter names."""
    found = [_LAYER.search(name) for name, _ in model.named_parameters() if not name.startswith(EMBEDDINGS)]
    return 1 + max((int(m.group(1) or m.group(2)) for m in found if m is not None), default=-1)


def optimizer_groups(model: nn.Module, training: TrainingConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the trainable parameters, each group with its ``lr``, ``lr_scale`` (its lr
    over ``training.lr``), ``weight_decay`` and ``decay`` (whether it takes the configured weight decay).

    Weight decay on tensors of two or more dimensions only (linear, embedding and conv weights, ViT's
    position table and [CLS] token), none on biases and LayerNorm gains: nanoGPT's rule (decaying a gain
    towards 0 fights the normalisation). Without a layer decay that is two groups, decayed first, as
    checkpoints before these options had them; with one, two per depth, the head's first (so that the
    first group's rate is the one logged).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay, n_layers = training.layer_lr_decay, count_layers(model)
    depths = [n_layers + 1] if decay is None else range(n_layers + 1, -1, -1)
    groups = []
    for depth in depths:
        scale = 1.0 if decay is None else decay ** (n_layers + 1 - depth)
        at_depth = [(n, p) for n, p in named if decay is None or layer_depth(n, n_layers) == depth]
        for decays in (True, False):
            params = [p for _, p in at_depth if (p.dim() >= 2) == decays]
            if params or decay is None:
                groups.append({"params": params, "lr": training.lr * scale, "lr_scale": scale,
                               "decay": decays, "weight_decay": training.weight_decay if decays else 0.0})
    return groups


# the training keys a resume cannot change: they decide which parameters train, and the adapters' scale
RESUME_FIXED = ("finetune", "freeze_embeddings", "lora_rank", "lora_alpha", "lora_targets")


def check_same_finetuning(stored: dict[str, Any], requested: TrainingConfig) -> None:
    """One line naming the first fine-tuning key a resume would change; a layer decay may be switched
    between values, not on or off (that changes the optimizer's groups)."""
    defaults = TrainingConfig()
    for key in RESUME_FIXED:
        old, new = stored.get(key, getattr(defaults, key)), getattr(requested, key)
        if (list(old) if isinstance(old, (list, tuple)) else old) != (
                list(new) if isinstance(new, tuple) else new):
            raise ResumeError(f"checkpoint was trained with training.{key}={old!r}, config asks {new!r} "
                              "(it decides which weights train: start a new run)")
    old = stored.get("layer_lr_decay")
    if (old is None) != (requested.layer_lr_decay is None):
        raise ResumeError(f"checkpoint was trained with training.layer_lr_decay={old!r}, "
                          f"config asks {requested.layer_lr_decay!r} (switching it on or off regroups the "
                          "optimizer: start a new run)")
