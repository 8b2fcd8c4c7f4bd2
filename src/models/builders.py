"""The one place where ``model.family`` picks a model: each family's own builder does the wiring.

Adding a family: a model file in ``src/models/``, its name in ``ModelConfig.family``, and one line here.
"""

from typing import Any

from torch import nn

from src.config.model import ModelConfig


def build(cfg: ModelConfig, **sizes: Any) -> nn.Module:
    """The model of ``cfg.family``; ``sizes`` come from the task (``task.model_sizes()``: vocabularies,
    classes, pad id)."""
    from src.models.decoder_lm import build_decoder_lm
    from src.models.encoder_classifier import build_encoder_classifier
    from src.models.masked_lm import build_encoder_mlm
    from src.models.rnn_classifier import build_rnn_classifier
    from src.models.transformer import build_model
    from src.models.vit import build_vit

    builders = {
        "encoder_decoder": lambda: build_model(cfg, sizes["src_vocab_size"], sizes["tgt_vocab_size"],
                                               sizes["pad_id"]),
        "encoder_classifier": lambda: build_encoder_classifier(cfg, sizes["vocab_size"], sizes["n_classes"],
                                                               sizes["pad_id"], cfg.pooling),
        "lstm_classifier": lambda: build_rnn_classifier(cfg, "lstm", sizes["vocab_size"], sizes["n_classes"],
                                                        sizes["pad_id"]),
        "gru_classifier": lambda: build_rnn_classifier(cfg, "gru", sizes["vocab_size"], sizes["n_classes"],
                                                       sizes["pad_id"]),
        "rnn_classifier": lambda: build_rnn_classifier(cfg, "rnn", sizes["vocab_size"], sizes["n_classes"],
                                                       sizes["pad_id"]),
        "decoder_lm": lambda: build_decoder_lm(cfg, sizes["vocab_size"], sizes["pad_id"]),
        "vit": lambda: build_vit(cfg, sizes["n_classes"]),
        "encoder_mlm": lambda: build_encoder_mlm(cfg, sizes["vocab_size"], sizes["pad_id"]),
    }
    try:
        return builders[cfg.family]()
    except KeyError as err:
        raise ValueError(f"model.family={cfg.family!r} needs sizes the task did not give: {err} "
                         f"(the task gave {sorted(sizes)})") from None
