"""Image classification (Dosovitskiy et al. 2021): Fashion-MNIST in, a Vision Transformer, accuracy out.

``steps.py`` does each pipeline step for it (the gate is text classification's: test accuracy);
``task.py`` is what the training loop needs (augmented image batches, cross-entropy, [CLS] attention).
"""

from src.tasks.classification.steps import gate
from src.tasks.image_classification import steps
from src.tasks.spec import TaskSpec

TASK = TaskSpec(
    name="image_classification", title="image classification",
    # no tokenizer: the default stands
    families=("vit",), sources=("fashion_mnist",), tokenizer_kinds=("bpe",), batches="items",
    data_prep=steps.data_prep, tokenize=steps.tokenize, train=steps.train, evaluate=steps.evaluate,
    gate=gate, summary=steps.summary,
)
