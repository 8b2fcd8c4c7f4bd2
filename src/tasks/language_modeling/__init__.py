"""Language modelling: prose in, a GPT-like decoder, perplexity and bits per character out.

``steps.py`` does each pipeline step for it; ``task.py`` is what the training loop needs (windows of
one token stream, next-token cross-entropy, validation loss, perplexity and bpc, sampled text).
"""

from src.tasks.language_modeling import steps
from src.tasks.spec import TaskSpec

TASK = TaskSpec(
    name="language_modeling", title="language modelling",
    families=("decoder_lm",), sources=("prose", "hf", "local", "clearml"), tokenizer_kinds=("bpe", "char"),
                batches="items",
    windows=True,
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=steps.gate, summary=steps.summary,
)
