"""What a checkpoint holds, its format version, and the upgrade of older ones: the one owner of the format.

``src/training/checkpoint.py`` writes and reads the files (atomically, ``weights_only``, with a digest);
this module says what is in them. Two kinds:

- a training checkpoint (``step_XXXXXXXX.pt``, ``training_state``): everything a run needs to continue
  after a crash: model, optimizer, scheduler, RNG states, the sampler's position, the per-layer
  gradient-norm history, and the config it was trained with (JSON text);
- the best checkpoint (``best.pt``, ``best_state``): the weights of the lowest validation loss.

Since format 2 both also carry what the model needs to be used alone (``inference_fields``): the
tokenizers (``tokenizer.json`` text), the special token ids and the model family; a classifier adds
its class names (``labels``), an image model its input normalisation (``image_stats``). All of it is
strings, ints and tensors, so the file still loads with ``torch.load(weights_only=True)``. A LoRA run's
checkpoints also carry ``lora`` (rank, alpha, targets): their ``model`` holds the frozen weights and the
adapters beside them, which a reader of a plain model merges (``src.training.finetune.model_weights``).

Older files: one of format 1 (no tokenizers) trains on but cannot be used alone (``inference_state``
says so), and an optimizer state saved with one parameter group, before biases and norm gains had
their own no-decay group, is mapped onto today's two (``regroup_optimizer_state``). A resume refuses a
checkpoint whose weights would not fit the config's model (``check_same_shape``); the model keys that
may change are ``MODEL_KEYS_ALLOWED`` of ``src/config/model.py``, which ``src.runs.check_resume`` reads too.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.config.base import ResumeError, config_to_dict
from src.config.model import MODEL_KEYS_ALLOWED, ModelConfig

if TYPE_CHECKING:  # types only: the format's names (src.inference offers two) come without torch's 1 s import
    import torch

    from src.config import ExperimentConfig  # its module reads the task table, which reaches the loop

CHECKPOINT_FORMAT = 2
FAMILY = "encoder_decoder"  # translation; the classifiers also store their class names ("labels")
FAMILIES = frozenset({"encoder_decoder", "encoder_classifier", "lstm_classifier", "gru_classifier",
                      "rnn_classifier", "decoder_lm", "vit", "encoder_mlm"})
INFERENCE_KEYS = ("format", "family", "config", "tokenizers", "special_ids")


def inference_fields(tokenizers: dict[str, Any], family: str = FAMILY) -> dict[str, Any]:
    """What a checkpoint needs besides weights and config to be used alone (``Tokenizer`` objects in)."""
    from src.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

    return {
        "format": CHECKPOINT_FORMAT,
        "family": family,
        "tokenizers": {side: tok.to_str() for side, tok in tokenizers.items()},
        "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID},
    }


def training_state(*, step: int, elapsed: float, best_valid: float, model: "torch.nn.Module",
                   optimizer: "torch.optim.Optimizer", scheduler: Any, sampler: Any, rng: dict[str, Any],
                   config: "ExperimentConfig", grad_history: dict[str, list[float]], grad_steps: list[int],
                   inference: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint: all a run needs to continue on the same loss curve (``step_XXXXXXXX.pt``)."""
    return {
        "step": step, "elapsed": elapsed, "best_valid": best_valid,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
        "rng": rng, "config": json.dumps(config_to_dict(config)),
        "grad_history": grad_history, "grad_steps": grad_steps, **inference,
    }


def best_state(*, step: int, model: "torch.nn.Module", valid_loss: float, config: "ExperimentConfig",
               inference: dict[str, Any]) -> dict[str, Any]:
    """The best checkpoint (``best.pt``): weights, their validation loss, config and inference fields."""
    return {
        "step": step, "model": model.state_dict(), "valid_loss": valid_loss,
        "config": json.dumps(config_to_dict(config)), **inference,
    }


def stored_config(state: dict[str, Any]) -> dict[str, Any]:
    """The experiment config a checkpoint was trained with, as a plain dict (not validated)."""
    return json.loads(state["config"])


def inference_state(path: Path) -> dict[str, Any]:
    """Checkpoint ``path`` loaded; refused in one line if it cannot rebuild its model alone (older format)."""
    from src.training.checkpoint import CheckpointError, load_checkpoint

    state = load_checkpoint(path)
    missing = [key for key in INFERENCE_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path} cannot be used on its own: it lacks {missing} (written before checkpoints carried "
            f"their tokenizers, format < {CHECKPOINT_FORMAT}); train again to get a self-contained checkpoint"
        )
    if state["family"] not in FAMILIES:
        raise CheckpointError(f"{path} holds a {state['family']!r} model; "
                              f"this version can load {sorted(FAMILIES)}")
    if state["family"] == "vit" and "image_stats" not in state:
        raise CheckpointError(f"{path} holds a vit model without its input normalisation (image_stats); "
                              "train again")
    return state


def check_same_shape(stored: dict[str, Any], requested: dict[str, Any]) -> None:
    """One line naming the first model key whose change makes the checkpoint's weights not fit.

    ``src.runs.check_resume`` refuses the same keys before a resumed run starts, by the same table.
    """
    stored = config_to_dict(ModelConfig.model_validate(stored))  # keys added since it was written: defaults
    for key in sorted(set(stored) | set(requested)):
        if key not in MODEL_KEYS_ALLOWED and stored.get(key) != requested.get(key):
            raise ResumeError(f"checkpoint has model.{key}={stored.get(key)!r}, "
                              f"config asks {requested.get(key)!r} (a different model shape needs a new run)")


def regroup_optimizer_state(stored: dict[str, Any], model: "torch.nn.Module",
                            optimizer: "torch.optim.Optimizer") -> dict[str, Any]:
    """An optimizer state saved with one parameter group (before the no-decay group), mapped onto
    ``optimizer``'s groups.

    A state dict numbers parameters in group order; the one old group held them in model order.
    """
    if len(stored["param_groups"]) == len(optimizer.param_groups):
        return stored
    position = {id(p): i for i, p in enumerate(model.parameters())}
    # new index -> old
    old_index = [position[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups, start = [], 0
    for group in optimizer.param_groups:
        groups.append({**stored["param_groups"][0], "weight_decay": group["weight_decay"],
                       "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    state = {new: stored["state"][old] for new, old in enumerate(old_index) if old in stored["state"]}
    return {"state": state, "param_groups": groups}
