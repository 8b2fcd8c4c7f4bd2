"""One library function per pipeline step: data prep, tokenization, train, evaluate, register.

Each ``run`` validates its configuration again (parameters may arrive as strings from ClearML),
opens its own tracked task, does its work, uploads what a reviewer needs and returns a small dict
of ids and paths that the next step takes. ``pipelines/`` only wires these together.
"""

STEP_NAMES = ("data_prep", "tokenize", "train", "evaluate", "register")
