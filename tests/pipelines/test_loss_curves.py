"""Every model family's tiny loss curve is the one recorded before the tasks, steps and loop moved (to 1e-6).

The encoder-decoder's is checked on ``tiny_runs`` (test_runs.py), the IMDB encoder's, the LM's and the
ViT's on their pipelines' own runs (test_classification_pipeline.py, test_lm_pipeline.py,
test_vit_pipeline.py); this file checks the sliding-window and Longformer encoders on their session
runs, and trains the three recurrent baselines for 10 steps each. Those take data_prep and tokenize from
the session's imdb-tiny run (the step cache, tests/pipelines/test_step_cache.py): the same files a run of
their own would prepare, so each curve is still that of its own full run.
"""

from pathlib import Path

import pytest

from tests.pipelines.conftest import (
    assert_recorded_loss_curve,
    imdb_data_dir,
    recorded_curve,
    seed_step_cache,
    train_completed,
)


def test_the_sliding_window_encoder_follows_its_recorded_curve(listops_run):
    assert_recorded_loss_curve(listops_run, "listops_tiny")


def test_the_longformer_encoder_follows_its_recorded_curve(imdb_long_run):
    assert_recorded_loss_curve(imdb_long_run, "imdb_long_tiny")


@pytest.fixture(scope="module")
def recurrent_root(imdb_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the three recurrent runs go: their data steps come from the session's imdb-tiny run (the same
    data and tokenizer sections)."""
    root = tmp_path_factory.mktemp("recurrent")
    seed_step_cache(root, imdb_run[1])
    return root


@pytest.mark.timeout(240)
@pytest.mark.parametrize("family", ["lstm_classifier", "gru_classifier", "rnn_classifier"])
def test_each_recurrent_baseline_follows_its_recorded_curve(family, recurrent_root):
    """IMDB tiny with the recurrent family, 10 steps (~10-15 s: the data steps are the shared run's)."""
    fixture = recorded_curve(family)
    run_dir = train_completed(fixture["config"], recurrent_root, *fixture["overrides"],
                              STEPWISE_DATA_DIR=imdb_data_dir())
    assert_recorded_loss_curve(run_dir, family)
