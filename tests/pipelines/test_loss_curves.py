"""Every model family's tiny loss curve is the one recorded before the tasks, steps and loop moved (to 1e-6).

The encoder-decoder's is checked on ``tiny_runs`` (test_runs.py), the IMDB encoder's, the LM's and the
ViT's on their pipelines' own runs (test_classification_pipeline.py, test_lm_pipeline.py,
test_vit_pipeline.py); this file checks the sliding-window and Longformer encoders on their session
runs, and trains the three recurrent baselines for 10 steps each.
"""

import pytest

from tests.pipelines.conftest import (
    assert_recorded_loss_curve,
    imdb_data_dir,
    recorded_curve,
    train_completed,
)


def test_the_sliding_window_encoder_follows_its_recorded_curve(listops_run):
    assert_recorded_loss_curve(listops_run, "listops_tiny")


def test_the_longformer_encoder_follows_its_recorded_curve(imdb_long_run):
    assert_recorded_loss_curve(imdb_long_run, "imdb_long_tiny")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("family", ["lstm_classifier", "gru_classifier", "rnn_classifier"])
def test_each_recurrent_baseline_follows_its_recorded_curve(family, tmp_path):
    """~15-25 s each: IMDB tiny with the recurrent family, 10 steps."""
    fixture = recorded_curve(family)
    run_dir = train_completed(fixture["config"], tmp_path, *fixture["overrides"],
                              STEPWISE_DATA_DIR=imdb_data_dir())
    assert_recorded_loss_curve(run_dir, family)
