"""Masked-language-model pretraining (Devlin et al. 2019, Sec. 3.1): 15% of the tokens are chosen,
80% of those become [MASK], 10% a random token, 10% stay; the encoder predicts the chosen ones.

``steps.py`` does each pipeline step for it (unlabelled text: IMDB's training reviews only, prose, local
files); ``task.py`` is what the training loop needs (texts masked afresh in every batch, the loss at the
chosen positions, validation on fixed masks, the top-5 guesses for masked words). The encoder it trains
(``model.family: encoder_mlm``, ``src/models/masked_lm.py``) has the encoder classifier's parameter names,
so a classifier starts from it.
"""

from typing import TYPE_CHECKING

from src.tasks.masked_lm import steps
from src.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from src.experiment import ExperimentConfig


def check(cfg: "ExperimentConfig") -> None:
    """A text has a position for each of its tokens, as in the classifier it is pretrained for."""
    longest = cfg.tokenizer.max_tokens_per_sentence
    if longest > cfg.model.max_positions:
        raise ValueError(f"tokenizer.max_tokens_per_sentence={longest} exceeds model.max_positions="
                         f"{cfg.model.max_positions}: the model has no position for a text's later tokens")

TASK = TaskSpec(
    name="masked_lm", title="masked-LM pretraining",
    families=("encoder_mlm",), sources=("prose", "imdb", "hf", "local", "clearml"),
    tokenizer_kinds=("bpe", "word", "byte"),
    batches="tokens",
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=steps.gate, summary=steps.summary, check=check,
)
