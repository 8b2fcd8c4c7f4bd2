"""Self-contained checkpoints of every family from untrained tiny models (the tests/inference/test_loader.py pattern)."""

import json
from pathlib import Path

import torch
from datasets import Dataset

from src.config import config_to_dict, load_config, validate_config
from src.data.tokenizer import PAD_ID, TokenizerConfig, load_tokenizer, train_one
from src.inference import inference_fields
from src.inference.loader import model_sizes
from src.models.builders import build
from src.training.checkpoint import atomic_torch_save

SENTENCES = ["Ich habe keine Zeit.", "Das ist gut.", "Wir gehen nach Hause.", "Er liest ein Buch.",
             "I have no time.", "That is good.", "We go home.", "He reads a book."] * 4


def make_checkpoint(root: Path, config_file: str, sides: tuple[str, ...], model: dict | None = None,
                    labels: list[str] | None = None, image_stats: dict | None = None, seed: int = 0) -> Path:
    """Write ``root/run/best.pt`` for ``config_file`` (with ``model`` overrides); tokenizers trained on SENTENCES."""
    raw = config_to_dict(load_config(config_file))
    raw["model"] |= model or {}
    cfg = validate_config(raw, source=config_file)
    tokenizers = {}
    if sides:
        path = train_one(Dataset.from_dict({"text": SENTENCES}), ["text"],
                         TokenizerConfig(vocab_size=300, min_frequency=1), root / "tokenizer.json")
        tokenizers = {side: load_tokenizer(path) for side in sides}
    family = cfg.model.family
    torch.manual_seed(seed)
    net = build(cfg.model, **model_sizes(family, tokenizers, labels or [], PAD_ID)).eval()
    state = {"step": 11, "model": net.state_dict(), "config": json.dumps(config_to_dict(cfg)),
             **inference_fields(tokenizers, family), "labels": labels or [], **({"image_stats": image_stats} if image_stats else {})}
    atomic_torch_save(state, root / "run" / "best.pt")
    return root / "run" / "best.pt"
