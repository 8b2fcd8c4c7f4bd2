"""The generate subcommand refuses models that are not language models."""

import argparse
from types import SimpleNamespace

import pytest

from src.inference import generate


def test_generate_refuses_a_translation_checkpoint(monkeypatch, tmp_path):
    import src.inference.loader as loader
    import src.runs as runs

    monkeypatch.setattr(runs, "resolve_checkpoint", lambda run, runs_dir: tmp_path / "best.pt")
    monkeypatch.setattr(loader, "load_for_inference",
                        lambda path, device, backend: SimpleNamespace(family="encoder_decoder", path=path))
    args = argparse.Namespace(run="x", runs_dir="runs", device="cpu", backend="torch", prompt="Hi",
                              max_new_tokens=5,
                              temperature=1.0, top_k=None, top_p=None, seed=None)
    with pytest.raises(ValueError,
                       match="holds a model of family encoder_decoder; generate needs a language model"):
        generate.generate_command(args)


@pytest.fixture
def trained():
    """A tiny untrained character LM as ``load_for_inference`` returns it."""
    import torch

    from src.config import ModelConfig
    from src.data.char_tokenizer import char_tokenizer
    from src.models.decoder_lm import build_decoder_lm

    torch.manual_seed(0)
    tokenizer = char_tokenizer("abcdefgh .\n")
    cfg = ModelConfig(family="decoder_lm", d_model=16, n_heads=2, n_decoder_layers=1, d_ff=32, dropout=0.0,
                      positional_encoding="learned", max_positions=32)
    model = build_decoder_lm(cfg, tokenizer.get_vocab_size(), pad_id=0).eval()
    return SimpleNamespace(model=model, tokenizers={"text": tokenizer}, device=torch.device("cpu"),
                           special_ids={"pad": 0, "bos": 1, "eos": 2, "unk": 3})


def test_continue_text_starts_with_the_prompt_and_a_seed_repeats_it(trained):
    def sample(seed):
        return generate.continue_text(trained, "abc", max_new_tokens=12, temperature=1.0, seed=seed)

    assert sample(7).startswith("abc") and sample(7) == sample(7)
    assert len({sample(seed) for seed in range(6)}) > 1  # different seeds, different continuations
    greedy = generate.continue_text(trained, "abc", max_new_tokens=12, temperature=0.0)
    assert greedy == generate.continue_text(trained, "abc", max_new_tokens=12, temperature=1.0, top_k=1,
                                            seed=3)


def test_continue_text_warns_about_characters_the_model_never_saw(trained):
    from loguru import logger

    messages = []
    handle = logger.add(messages.append, level="WARNING")
    try:
        text = generate.continue_text(trained, "abZ c!", max_new_tokens=2, temperature=0.0)
    finally:
        logger.remove(handle)
    assert len(messages) == 1 and "fed as <unk>: ['!', 'Z']" in messages[0]
    # as typed, then <= 2 characters (specials print none)
    assert text.startswith("abZ c!") and len(text) <= len("abZ c!") + 2
