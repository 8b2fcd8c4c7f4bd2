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
                        lambda path, device: SimpleNamespace(family="encoder_decoder", path=path))
    args = argparse.Namespace(run="x", runs_dir="runs", device="cpu", prompt="Hi", max_new_tokens=5,
                              temperature=1.0, top_k=None, top_p=None, seed=None)
    with pytest.raises(ValueError, match="holds a model of family encoder_decoder; generate needs a language model"):
        generate.generate_command(args)
