"""The ``data`` command on the Ding fixture: exit code, artefacts and figures."""

import json

import pytest

from src.config import ConfigError
from src import data_cli as cli


def data_command(argv: list[str]) -> int:
    """``python -m src.main data ARGV``: the exit code; the output goes to stdout."""
    from src.main import main

    return main(["data", *argv])


@pytest.fixture
def no_default_config(monkeypatch):
    def missing():
        raise ConfigError("no default config found")

    monkeypatch.setattr(cli, "default_config_path", missing)


def test_run_prints_and_saves_figures(ding_file, tmp_path, capsys, no_default_config):
    out = tmp_path / "out"
    assert data_command(
        [
            "--out-dir",
            str(out),
            f"data.ding_path={ding_file}",
            "tokenizer.vocab_size=300",
            "data.ding_extra_train_phrases=true",
        ]
    ) == 0
    figures = json.loads((out / "figures.json").read_text())
    assert figures == json.loads(capsys.readouterr().out)
    assert (
        sum(figures["pairs_per_split"].values()) + sum(figures["dropped_by_reason"].values())
        == figures["input_rows"]
    )
    assert 0 < figures["train_extra_phrases"] < figures["pairs_per_split"]["train"]
    assert (
        0
        < figures["batching"]["padding_efficiency_random"]
        <= figures["batching"]["padding_efficiency_token_budget"]
        <= 1
    )
    assert figures["tokenize_seconds"]["total"] >= figures["tokenize_seconds"]["train_bpe"]
    for name in (
        "dataset",
        "encoded",
        "tokenizer.json",
        "data_card.json",
        "data_card.md",
        "length_histogram.png",
    ):
        assert (out / name).exists(), name


def test_explicit_config_file_and_clear_failure(tmp_path, no_default_config):
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  ding_path: {tmp_path / 'missing'}\n")
    assert data_command(["--config", str(config), "--out-dir", str(tmp_path / "o")]) == 1
    assert data_command(["--out-dir", str(tmp_path / "o"), "data.no_such_key=1"]) == 1


@pytest.mark.parametrize("config", ["config/lm_tiny.yaml", "config/vit_tiny.yaml", "config/imdb_tiny.yaml"])
def test_other_tasks_are_refused_with_a_reason(config, tmp_path):
    import argparse

    args = argparse.Namespace(config=config, out_dir=str(tmp_path / "o"), overrides=[])
    with pytest.raises(ConfigError,
                       match="the data command reports on translation corpora; this config has task="):
        cli.report(args)
    assert data_command(["--config", config, "--out-dir", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()
