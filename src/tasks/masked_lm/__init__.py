"""Masked-language-model pretraining (Devlin et al. 2019, Sec. 3.1): 15% of the tokens are chosen,
80% of those become [MASK], 10% a random token, 10% stay; the encoder predicts the chosen ones.

``steps.py`` does each pipeline step for it (unlabelled text: IMDB's training reviews only, prose, local
files); ``task.py`` is what the training loop needs (texts masked afresh in every batch, the loss at the
chosen positions, validation on fixed masks, the top-5 guesses for masked words). The encoder it trains
(``model.family: encoder_mlm``, ``src/models/masked_lm.py``) has the encoder classifier's parameter names,
so a classifier starts from it.
"""

from src.tasks.masked_lm import steps
from src.tasks.spec import TaskSpec

TASK = TaskSpec(
    name="masked_lm", title="masked-LM pretraining",
    families=("encoder_mlm",), sources=("prose", "imdb", "hf", "local"), tokenizer_kinds=("bpe", "word"),
    batches="tokens",
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=steps.gate, summary=steps.summary,
)
