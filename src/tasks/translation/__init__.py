"""Translation (Vaswani et al. 2017): parallel text in, an encoder-decoder Transformer, BLEU and chrF out.

``steps.py`` does each pipeline step for it; ``task.py`` is what the training loop needs (batches of
token pairs, label-smoothed cross-entropy with teacher forcing, validation loss and perplexity).
"""

from src.tasks.spec import TaskSpec
from src.tasks.translation import steps

TASK = TaskSpec(
    name="translation", title="translation",
    families=("encoder_decoder",), sources=("ding", "hf", "local", "clearml"), tokenizer_kinds=("bpe",),
                batches="tokens",
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=steps.gate, summary=steps.summary,
)
