"""A second ``train`` reuses the data steps of an earlier run when their sections are equal (offline).

The earlier runs are the session's ``tiny_runs`` (two full runs of ``config/tiny.yaml`` with ``--no-cache``,
which still record their data steps in ``<output_dir>/.step_cache``; the second recorded last). Two short
runs go into an ``output_dir`` holding a copy of that index: one that changes only training settings takes
data prep and tokenization from the second tiny run; one that changes ``tokenizer.vocab_size`` tokenizes
again on the same prepared data. A hit hard-links the earlier run's files and never writes them, so the
shared runs stay as they were. ``--no-cache`` runs every step: the second of the ``tiny_runs`` prepared its
own data.
"""

import json
import shutil
from pathlib import Path

import pytest

from src.runs.step_cache import CACHE_DIR
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env, run_folder

SHORT = ["training.max_steps=4", "training.eval_every=4", "training.checkpoint_every=4",
         "evaluation.max_test_sentences=4"]


def train(root: Path, *args: str) -> tuple[Path, str]:
    proc = run_src_main(["train", "--config", "config/tiny.yaml", *SHORT, *args,
                         f"output_dir={root / 'runs'}"],
                        clean_env(root / "home"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return run_folder(proc.stdout), proc.stderr


def steps(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())["steps"]


def sessions(run_dir: Path, step: str) -> list[Path]:
    return list((run_dir / step / "clearml_offline").glob("*.zip"))


@pytest.fixture(scope="module")
def runs(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("step_cache")
    # the index only: its entries name the tiny runs' step folders, which a hit copies from
    shutil.copytree(tiny_runs.runs_dir / CACHE_DIR, root / "runs" / CACHE_DIR)
    first = tiny_runs.run_dirs[1]
    lr, lr_log = train(root, "training.lr=0.002")
    vocab, _ = train(root, "tokenizer.vocab_size=300")
    return {"first": first, "lr": lr, "lr_log": lr_log, "vocab": vocab}


@pytest.mark.timeout(600)
def test_a_training_change_reuses_data_prep_and_tokenize(runs):
    first, lr = runs["first"], runs["lr"]
    for step in ("data_prep", "tokenize"):
        state = steps(lr)[step]
        assert state["status"] == "completed" and state["cached"] is True
        assert state["cached_from"] == first.name
        assert not sessions(lr, step)  # no task ran for it in this run
        assert sorted(p.name for p in (lr / step).iterdir()) == sorted(
            p.name for p in (first / step).iterdir() if p.name not in ("clearml_offline",))
    assert steps(first)["data_prep"]["cached"] is False
    for step in ("train", "evaluate", "register"):
        assert "cached" not in steps(lr)[step] and len(sessions(lr, step)) == 1, step
    # the reused output points into the new run's own folder, which training read
    assert steps(lr)["tokenize"]["output"]["tokenized_dir"] == str(lr / "tokenize")
    assert f"the same task and data as run {first.name}" in runs["lr_log"]


@pytest.mark.timeout(600)
def test_a_tokenizer_change_tokenizes_again_on_the_prepared_data(runs):
    vocab = runs["vocab"]
    assert steps(vocab)["data_prep"]["cached"] is True
    assert steps(vocab)["tokenize"]["cached"] is False and len(sessions(vocab, "tokenize")) == 1
    tokenizer = json.loads((vocab / "tokenize" / "tokenizer.json").read_text())
    assert len(tokenizer["model"]["vocab"]) == 300


def test_no_cache_runs_every_step(tiny_runs):
    """Two runs of the same config in one folder, the second with --no-cache (the tiny_runs fixture)."""
    fresh = tiny_runs.run_dirs[1]
    assert all(steps(fresh)[step]["cached"] is False for step in ("data_prep", "tokenize"))
    assert all(len(sessions(fresh, step)) == 1 for step in ("data_prep", "tokenize", "train"))
