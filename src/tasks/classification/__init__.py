"""Text classification: labelled text in (IMDB, ListOps, a file or a Hugging Face dataset), a BERT-like
encoder or a recurrent baseline, accuracy, macro-F1 and a confusion matrix out.

``steps.py`` does each pipeline step for it; ``task.py`` is what the training loop needs (token-budget
batches of texts, cross-entropy over the classes, validation loss and accuracy, [CLS] heatmaps).
"""

from typing import TYPE_CHECKING

from src.tasks.classification import steps
from src.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from src.experiment import ExperimentConfig


def check(cfg: "ExperimentConfig") -> None:
    """A classified text has a position for each of its tokens, and a ListOps expression is never cut."""
    longest = cfg.tokenizer.max_tokens_per_sentence
    if cfg.model.family == "encoder_classifier" and longest > cfg.model.max_positions:
        raise ValueError(f"tokenizer.max_tokens_per_sentence={longest} exceeds model.max_positions="
                         f"{cfg.model.max_positions}: the model has no position for a text's later tokens")
    if cfg.data.source == "listops" and cfg.tokenizer.kind == "word":
        n = cfg.data.listops_max_length
        words = 3 * n - 2 if cfg.data.listops_parentheses else n  # one "( ... )" pair per token but one
        if longest < words + 1:
            raise ValueError(f"tokenizer.max_tokens_per_sentence={longest} would cut ListOps expressions, "
                             f"whose value needs every token: [CLS] + up to {words} words "
                             f"(data.listops_max_length={n}"
                             f"{', with parentheses' if cfg.data.listops_parentheses else ''}); expected >= "
                             f"{words + 1}")


TASK = TaskSpec(
    name="classification", title="text classification",
    families=("encoder_classifier", "lstm_classifier", "gru_classifier", "rnn_classifier"),
    sources=("imdb", "listops", "hf", "local", "clearml"), tokenizer_kinds=("bpe", "byte", "word", "char"),
                batches="tokens",
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=steps.gate, summary=steps.summary, check=check,
)
