"""Guarded resume: what may change between a run and its continuation, and what may not.

A checkpoint is only meaningful with the data, vocabulary and model shape it was trained with.
``check_resume`` compares the stored config of a run with the one a ``--resume`` asks for:

- ``data`` and ``tokenizer`` changed: refused. They define the vocabulary the checkpoint's
  embeddings index; reusing the old prepared data would train on something else than the
  config (and ClearML) says, and re-running them would invalidate the checkpoint.
- a ``model`` key that shapes the weights changed: refused, in one line naming the key.
- ``batching.block_size`` changed: refused (the language model's windows, which the sampler's
  saved position counts, would be cut differently).
- everything else (training length, learning rate, batching, evaluation, tracking), image
  augmentation, and the model's dropout and attention backend: allowed, and returned so the run
  can record it.
"""

from typing import Any

from src.config import ResumeError, config_to_dict
from src.config.model import MODEL_KEYS_ALLOWED
from src.experiment import ExperimentConfig

REFUSED_SECTIONS = ("data", "tokenizer")
# a check on the split sizes, and augmentation of training batches: neither changes the prepared data
DATA_KEYS_ALLOWED = frozenset({"min_eval_pairs", "augmentation"})
# the language model's training windows are cut from the stream at this size: the sampler's position
# in the checkpoint counts windows of the old size
BATCHING_KEYS_REFUSED = frozenset({"block_size"})
IGNORED_TOP_LEVEL = frozenset({"run_id", "run_name", "output_dir"})
REFUSED_TOP_LEVEL = frozenset({"task"})  # what the checkpoint learned


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"d_model": 32}}`` -> ``{"model.d_model": 32}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(old: ExperimentConfig | dict,
                       new: ExperimentConfig | dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every key whose value differs."""
    a = flatten(config_to_dict(old) if isinstance(old, ExperimentConfig) else old)
    b = flatten(config_to_dict(new) if isinstance(new, ExperimentConfig) else new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume(stored: ExperimentConfig, requested: ExperimentConfig,
                 run: str) -> dict[str, tuple[Any, Any]]:
    """Raise ``ResumeError`` for a change the checkpoint cannot follow; return the allowed changes."""
    changes = {k: v for k, v in config_differences(stored, requested).items()
               if k.split(".")[0] not in IGNORED_TOP_LEVEL}
    for key in REFUSED_TOP_LEVEL & set(changes):  # the broadest change first: it explains the others
        old, new = changes[key]
        raise ResumeError(f"cannot resume {run}: it was trained for {key}={old!r}, config asks {new!r} "
                          "(start a new run: drop --resume)")
    for key, (old, new) in changes.items():
        section, _, name = key.partition(".")
        if section == "model" and name not in MODEL_KEYS_ALLOWED:
            raise ResumeError(f"cannot resume {run}: checkpoint has {key}={old!r}, config asks {new!r} "
                              "(a different model shape or attention pattern needs a new run: drop --resume)")
        if section == "batching" and name in BATCHING_KEYS_REFUSED:
            raise ResumeError(f"cannot resume {run}: its training windows were cut at {key}={old!r}, config "
                              f"asks {new!r}; the checkpoint's place in the data counts those windows (drop "
                              "--resume)")
        if section in REFUSED_SECTIONS and name not in DATA_KEYS_ALLOWED:
            raise ResumeError(f"cannot resume {run}: its {section} step used {key}={old!r}, config asks "
                              f"{new!r}; the checkpoint was trained on that data and vocabulary (start a new "
                              "run: drop --resume)")
    return changes
