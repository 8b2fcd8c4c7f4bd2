"""Toy texts for the classifier tests: [CLS] + random tokens + padding, and a loop that fits a model to
labels."""

import torch

PAD, CLS, VOCAB = 0, 1, 20


def texts(lengths: list[int], width: int, seed: int = 1) -> torch.Tensor:
    """One row per length: [CLS], then ``n - 1`` random ids in [2, VOCAB), then PAD up to ``width``."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), width), PAD)
    for row, n in enumerate(lengths):
        tokens[row, 0] = CLS
        tokens[row, 1:n] = torch.randint(2, VOCAB, (n - 1,), generator=generator)
    return tokens


def fit_accuracy(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor, steps: int,
                 lr: float) -> float:
    """Full-batch AdamW on cross-entropy for ``steps`` steps; the training accuracy afterwards, in eval
    mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (model.eval()(tokens).argmax(-1) == labels).float().mean().item()
