"""Decoding and evaluation settings."""

from pydantic import PositiveFloat, PositiveInt, confloat

from src.config.base import FrozenConfig


class EvaluationConfig(FrozenConfig):
    """How the test split is decoded and scored."""

    beam_size: PositiveInt = 4
    length_penalty: confloat(ge=0.0) = 0.6
    max_new_tokens: PositiveInt = 64
    batch_size: PositiveInt = 64
    n_samples: PositiveInt = 8  # translations shown in the sample table and heatmaps
    max_test_sentences: PositiveInt | None = None
    bleu_threshold: PositiveFloat = 10.0  # register step: minimum BLEU for "production" (translation)
    accuracy_threshold: confloat(gt=0.0, le=1.0) = 0.85  # the same for classification (a fraction)
    # language modelling: the register step's gate, the most test bits per character for "production"
    # (lower is better); validation during training scores the first valid_max_tokens tokens (None: all)
    bpc_threshold: PositiveFloat = 2.5
    valid_max_tokens: PositiveInt | None = None
    # masked-LM pretraining: the register step's gate, the most test masked-token loss (nats) for
    # "production" (lower is better)
    masked_loss_threshold: PositiveFloat = 6.0
    n_worst: PositiveInt = 20  # classification: most confidently misclassified texts shown
