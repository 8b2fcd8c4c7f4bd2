"""A Hugging Face model folder's ``config.json`` read as this project's ``model`` keys (no torch import).

``model.init_from: <folder>`` starts a run from a local Hugging Face folder (``config.json`` plus
``model.safetensors`` or ``pytorch_model.bin``): BERT for ``encoder_classifier``, GPT-2 for ``decoder_lm``,
ViT for ``vit``. The folder's sizes win over the YAML's (``hf_model_keys``): its weights fix them, and the
switches that make each family compute what Hugging Face computes (``src/models/hf_weights.py``) come
with them. Training settings (dropout, pooling, attention pattern) stay the YAML's.
"""

import json
from pathlib import Path
from typing import Any

# config.json's model_type -> the families that start from it (a BERT: its classifier, or its masked LM)
HF_FAMILIES = {"bert": ("encoder_classifier", "encoder_mlm"), "gpt2": ("decoder_lm",), "vit": ("vit",)}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class InitSourceError(ValueError):
    """``model.init_from`` cannot be used; the message is one line and says what to change."""


def is_hf_folder(path: str | Path) -> bool:
    """A folder with ``config.json`` and weights (a run folder has a ``config.json`` too, and no weights)."""
    path = Path(path)
    return (path.is_dir() and (path / "config.json").is_file()
            and any((path / name).is_file() for name in WEIGHT_FILES))


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``config.json``; refused in one line when it is not a folder of a family here."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") not in HF_FAMILIES:
        raise InitSourceError(f"model.init_from={folder}: config.json has model_type="
                              f"{config.get('model_type')!r}; this project loads {sorted(HF_FAMILIES)}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise InitSourceError(f"model.init_from={folder}: no weights file (expected one of "
                              f"{list(WEIGHT_FILES)})")
    return config


# Hugging Face's activation names -> ours: the exact erf GELU, and the tanh approximation under its three
# names (transformers' activations.py: NewGELUActivation, PytorchGELUTanh, FastGELUActivation compute the
# same formula); real GPT-2 checkpoints use "gelu_new"
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_fast": "gelu_tanh"}


def _activation(config: dict[str, Any], key: str) -> str:
    """Our ``model.activation`` for the folder's; refused when it is one this project does not compute."""
    if config.get(key) not in HF_ACTIVATIONS:
        raise InitSourceError(f"model.init_from: config.json has {key}={config.get(key)!r}; this project "
                              f"computes the Hugging Face activations {sorted(HF_ACTIVATIONS)}")
    return HF_ACTIVATIONS[config[key]]


def hf_model_keys(config: dict[str, Any], family: str, source: str = "") -> dict[str, Any]:
    """The ``model`` keys a folder's ``config.json`` sets for ``family``; refused when the folder is another
    family's (a GPT-2 folder for a classifier)."""
    model_type = config["model_type"]
    if family not in HF_FAMILIES[model_type]:
        takes = " or ".join(k for k, v in HF_FAMILIES.items() if family in v) or "no Hugging Face"
        raise InitSourceError(f"model.init_from={source} holds a {model_type} model (for family="
                              f"{HF_FAMILIES[model_type][0]!r}); model.family={family!r} starts from {takes} "
                              "weights")
    if model_type == "bert":  # BertModel: post-norm, learned positions, embedding LayerNorm, token types
        return {"d_model": config["hidden_size"], "n_heads": config["num_attention_heads"],
                "n_encoder_layers": config["num_hidden_layers"], "d_ff": config["intermediate_size"],
                "max_positions": config["max_position_embeddings"],
                "type_vocab_size": config.get("type_vocab_size", 2),
                "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
                "activation": _activation(config, "hidden_act"), "norm_first": False, "final_norm": False,
                "positional_encoding": "learned", "embedding_norm": True,
                "feed_forward_dropout": 0.0}  # BertIntermediate drops nothing
    if model_type == "gpt2":  # pre-norm blocks and a final LayerNorm: DecoderLM always has them
        return {"d_model": config["n_embd"], "n_heads": config["n_head"],
                "n_decoder_layers": config["n_layer"],
                "d_ff": config.get("n_inner") or 4 * config["n_embd"], "max_positions": config["n_positions"],
                "layer_norm_eps": config.get("layer_norm_epsilon", 1e-5),
                "activation": _activation(config, "activation_function"), "positional_encoding": "learned",
                "tie_output": config.get("tie_word_embeddings", True)}
    return {"d_model": config["hidden_size"], "n_heads": config["num_attention_heads"],  # vit: pre-norm
            "n_encoder_layers": config["num_hidden_layers"], "d_ff": config["intermediate_size"],
            "image_size": config["image_size"], "patch_size": config["patch_size"],
            "in_channels": config.get("num_channels", 3),
            "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
            "activation": _activation(config, "hidden_act"), "norm_first": True}


def hf_vocab_size(config: dict[str, Any]) -> int | None:
    """Rows of the folder's token table; None for an image model."""
    return config.get("vocab_size") if config["model_type"] != "vit" else None
